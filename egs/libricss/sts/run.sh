#!/usr/bin/env bash
# libricss/sts: the separator-transducer-segmenter (Sklyar et al., Interspeech 2022) at the paper's data scale:
# trained on two-party conversations simulated from LibriSpeech 960 h, evaluated on LibriCSS (one microphone of
# its 7-channel array) per recording condition 0L, 0S, OV10 ... OV40. For sites with the corpora and GPUs; the
# built-in small version is ../../synth_assistant/sts. See docs/sts.md.
#
#   ./run.sh                                            # corpora from $LIBRISPEECH and $LIBRICSS (local/db.sh)
#   ./run.sh --librispeech-dir /data/LibriSpeech --libricss-dir /data/LibriCSS --gpus-per-node 8
#   ./run.sh --download true                            # fetch what is missing first (lhotse's download recipes)
#   ./run.sh --stage 4 --systems "sts mt_rnnt" --num-epochs 10    # fewer systems, shorter training
#
# Stages: 0 manifests (lhotse's librispeech and libricss recipes; download only with --download true) and the
# LibriCSS windows (local/make_windows.py: --channel of the array, sessions cut into windows of whole turns of at
# most --max-window-s, session0 = dev, sessions 1-9 = test), 1 simulate conversations from LibriSpeech
# (serac.bin.simulate_conversations: train from --train-parts, dev from --dev-parts, speakers disjoint), 2 fbank
# of the conversations and the LibriCSS windows, 3 BPE with <sot>/<eot>, 4 train the systems (conf/<system>.yaml,
# $cuda_cmd), 5 decode LibriCSS (greedy, steps/decode.sh; streaming, steps/decode_streaming.sh), 6 score per
# LibriCSS condition (serac.bin.score_multitalker --group-by condition), 7 RESULTS.md. Every stage skips the work
# it finds done; stage wall times go to exp/timing.tsv.
set -euo pipefail
echo "$0 $*"
command_line=""   # the options, quoted, so that the command RESULTS.md names repeats the run as it was typed
[ $# -eq 0 ] || { command_line=$(printf "%q " "$@"); command_line=${command_line% }; }

stage=0
stop_stage=7
librispeech_dir=      # the LibriSpeech directory (holding train-clean-100, dev-clean, ...); empty: $LIBRISPEECH
libricss_dir=         # the LibriCSS directory (holding for_release/); empty: $LIBRICSS
download=false        # true: download what is missing into $dl_dir (lhotse's download recipes)
dl_dir=download
train_parts="train-clean-100 train-clean-360 train-other-500"
dev_parts="dev-clean"
prepare_nj=8
# LibriCSS windows (stage 0)
channel=0             # microphone of the 7-channel array (0-6) the model hears
max_window_s=60       # a window holds whole turns spanning at most this (a longer chain of overlapping turns
                      # without silence stays whole); a training conversation is 3-6 LibriSpeech utterances
                      # (12.3 s each on average)
margin_s=0.5          # silence kept around a window's speech, at most
# conversations (stage 1): the synth recipe's options
conversations=train:60000,dev:500   # about every LibriSpeech training utterance once (281k / 4.5 turns)
speakers=2,2
turns=3,6
overlap_ratios=0,0.1,0.2,0.3,0.4
pause=0.1,1.0
seed=1
sim_nj=8
fbank_nj=8
# lang (stage 3)
vocab_size=500
# training (stage 4)
systems="sts mt_rnnt sts_no_penalty sts_no_fastemit"
num_epochs=30
avg=10
gpus_per_node=4       # 0: train on CPU ($train_cmd); otherwise $cuda_cmd with one process per GPU
num_nodes=1
train_threads=4
train_opts=
init_from=            # for systems whose conf has train.init_modules (none here by default)
init_lang_dir=
# decoding and scoring (stages 5-6)
eval_sets=test        # LibriCSS windows to decode: test and/or dev
decode_nj=8
chunk_ms=160
gap_s=0.5
n_bootstrap=1000
results=RESULTS.md
help_message="Usage: $0 [--stage N] [--stop-stage M] [--librispeech-dir DIR] [--libricss-dir DIR]
          [--download true|false] [--train-parts \"...\"] [--dev-parts \"...\"] [--channel 0-6]
          [--max-window-s S] [--margin-s S] [--conversations train:N,dev:N] [--speakers MIN,MAX] [--turns MIN,MAX]
          [--overlap-ratios R,R,...] [--pause MIN,MAX] [--vocab-size N] [--systems \"sts mt_rnnt ...\"]
          [--num-epochs N] [--avg N] [--gpus-per-node N] [--num-nodes N] [--train-threads N]
          [--train-opts \"--set k=v ...\"] [--init-from CKPT] [--eval-sets \"test dev\"] [--decode-nj N]
          [--chunk-ms MS] [--gap-s S] [--n-bootstrap N] [--results FILE]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. "$SERAC_ROOT/local/db.sh"
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi

[ -z "$librispeech_dir" ] && librispeech_dir=$LIBRISPEECH
[ -z "$libricss_dir" ] && libricss_dir=$LIBRICSS
# accept the directory above LibriSpeech/ too (where lhotse's download puts it)
[ -d "$librispeech_dir/LibriSpeech" ] && librispeech_dir=$librispeech_dir/LibriSpeech
[ "$(basename "$libricss_dir")" = for_release ] && libricss_dir=$(dirname "$libricss_dir")
ls_parts="$train_parts $dev_parts"
conditions="0L 0S OV10 OV20 OV30 OV40"   # lhotse's libricss OVERLAP_RATIOS: for_release/<condition>/<session>/
lang=data/lang_bpe_${vocab_size}_turns
comma() { echo "$*" | tr ' ' ','; }
mkdir -p exp/log data/manifests
. utils/stage_utils.sh exp/timing.tsv
. utils/sts_utils.sh

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: lhotse manifests (LibriSpeech $ls_parts; LibriCSS) and the LibriCSS windows (channel $channel)"
  missing_ls=""
  for part in $ls_parts; do
    [ -f data/manifests/librispeech_supervisions_$part.jsonl.gz ] || [ -d "$librispeech_dir/$part" ] ||
      missing_ls="$missing_ls $part"
  done
  missing_css=""
  if [ ! -f data/manifests/libricss-mdm_supervisions_all.jsonl.gz ]; then
    for c in $conditions; do [ -d "$libricss_dir/for_release/$c" ] || missing_css="$missing_css for_release/$c"; done
  fi
  if [ -n "$missing_ls$missing_css" ] && [ "$download" != true ]; then
    [ -n "$missing_ls" ] && echo "$0: LibriSpeech parts not found in $librispeech_dir:$missing_ls" >&2
    [ -n "$missing_css" ] && echo "$0: LibriCSS parts not found in $libricss_dir:$missing_css" >&2
    echo "$0: set --librispeech-dir / --libricss-dir (or LIBRISPEECH / LIBRICSS in local/db.sh)," \
      "or pass --download true to fetch them" >&2
    exit 1
  fi
  if [ -n "$missing_ls" ]; then   # only the missing parts, with the librispeech recipe's downloader
    $train_cmd data/manifests/log/download_librispeech.log \
      python "$SERAC_ROOT/egs/librispeech/asr/local/download.py" --target-dir "$dl_dir" --parts "$missing_ls"
  fi
  if [ -n "$missing_css" ]; then
    $train_cmd data/manifests/log/download_libricss.log lhotse download libricss "$dl_dir/LibriCSS"
    libricss_dir=$dl_dir/LibriCSS
  fi
  todo=""
  for part in $ls_parts; do
    [ -f data/manifests/librispeech_supervisions_$part.jsonl.gz ] || todo="$todo $part"
  done
  if [ -n "$todo" ]; then
    # the parts found where the corpus was said to be, then those just downloaded
    n=0
    for dir in "$librispeech_dir" "$dl_dir/LibriSpeech"; do
      opts=""; left=""; n=$((n + 1))
      for part in $todo; do
        if [ -d "$dir/$part" ]; then opts="$opts -p $part"; else left="$left $part"; fi
      done
      todo=$left
      [ -z "$opts" ] || $train_cmd --num-threads $prepare_nj data/manifests/log/prepare_librispeech.$n.log \
        lhotse prepare librispeech -j $prepare_nj $opts "$dir" data/manifests
    done
    for part in $ls_parts; do
      [ -f data/manifests/librispeech_supervisions_$part.jsonl.gz ] || { echo "$0: lhotse wrote no manifest" \
        "for LibriSpeech $part (see data/manifests/log/prepare_librispeech.*.log)" >&2; exit 1; }
    done
  else
    echo "data/manifests/librispeech_supervisions_{$(comma $ls_parts)}.jsonl.gz exist, skipping"
  fi
  if [ -f data/manifests/libricss-mdm_supervisions_all.jsonl.gz ]; then
    echo "data/manifests/libricss-mdm_supervisions_all.jsonl.gz exists, skipping"
  else   # all 7 channels (mdm); local/make_windows.py keeps --channel
    $train_cmd data/manifests/log/prepare_libricss.log \
      lhotse prepare libricss --type mdm "$libricss_dir" data/manifests
  fi
  windows_made_with="# channel=$channel max_window_s=$(printf %g $max_window_s) margin_s=$(printf %g $margin_s)"
  # libricss_windows.txt is written last: without it the windows are incomplete and made again
  if [ -f data/manifests/libricss_cuts_test.jsonl.gz ] && [ -f data/manifests/libricss_cuts_dev.jsonl.gz ] &&
     [ -f data/manifests/libricss_windows.txt ]; then
    made_with=$(head -n 1 data/manifests/libricss_windows.txt)
    [ "$made_with" = "$windows_made_with" ] || { echo "$0: the LibriCSS windows were made with '$made_with', not" \
      "'$windows_made_with': remove data/manifests/libricss_cuts_{dev,test}.jsonl.gz to remake them" >&2; exit 1; }
    echo "data/manifests/libricss_cuts_{dev,test}.jsonl.gz exist, skipping"
  else
    $train_cmd data/manifests/log/make_windows.log python local/make_windows.py --manifest-dir data/manifests \
      --channel $channel --max-window-s $max_window_s --margin-s $margin_s
  fi
  stage_done 0 manifests
fi

conv_splits=$(echo "$conversations" | sed 's/:[0-9]*//g')   # train,dev
if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: simulate conversations from LibriSpeech ($conversations)"
  # each conversation split draws on its LibriSpeech parts (--sources); the parts' speakers are disjoint
  steps/simulate_conversations.sh --cmd "$train_cmd" --nj $sim_nj --opts "--seed $seed --speakers $speakers
    --turns $turns --overlap-ratios $overlap_ratios --pause $pause
    --sources train:$(echo $train_parts | tr ' ' '+'),dev:$(echo $dev_parts | tr ' ' '+')" \
    data/manifests librispeech $conversations data/manifests
  stage_done 1 conversations
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: fbank (80 bins, 16 kHz) of the conversations and the LibriCSS windows ($eval_sets)"
  steps/make_fbank.sh --cmd "$train_cmd" --num-mel-bins 80 --sampling-rate 16000 --num-jobs $fbank_nj \
    data/manifests conv $conv_splits data/fbank
  steps/make_fbank.sh --cmd "$train_cmd" --num-mel-bins 80 --sampling-rate 16000 --num-jobs $fbank_nj \
    data/manifests libricss "$(comma $eval_sets)" data/fbank
  stage_done 2 fbank
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: BPE ($vocab_size) with the turn tokens <sot> <eot>"
  steps/prepare_lang.sh --kind bpe --vocab-size $vocab_size --extra-symbols "<sot> <eot>" \
    data/fbank/conv_cuts_train.jsonl.gz $lang
  stage_done 3 lang
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: train $systems on $gpus_per_node GPU(s) x $num_nodes node(s), $num_epochs epochs"
  sts_check_systems "$systems"
  cmd=$cuda_cmd; [ "$gpus_per_node" -eq 0 ] && cmd=$train_cmd
  for s in $systems; do
    steps/train.sh --cmd "$cmd" --train-config conf/$s.yaml --num-epochs $num_epochs --num-threads $train_threads \
      --gpus-per-node $gpus_per_node --num-nodes $num_nodes --train-opts "$train_opts $(sts_init_opts $s)" \
      $lang data/fbank/conv_cuts_train.jsonl.gz data/fbank/conv_cuts_dev.jsonl.gz exp/$s
  done
  stage_done 4 train
fi

suffix=$(python -m serac.bin.decode --print-suffix --method greedy_search --epoch $num_epochs --avg $avg)
streaming_suffix=$(python -m serac.bin.decode_streaming --print-suffix --chunk-ms $chunk_ms --epoch $num_epochs \
  --avg $avg)
if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "Stage 5: decode LibriCSS $eval_sets (greedy search; streaming in ${chunk_ms} ms chunks)"
  for s in $systems; do
    for set in $eval_sets; do
      steps/decode.sh --cmd "$decode_cmd" --nj $decode_nj --epoch $num_epochs --avg $avg --method greedy_search \
        exp/$s $lang data/fbank/libricss_cuts_$set.jsonl.gz libricss_$set
      steps/decode_streaming.sh --cmd "$decode_cmd" --nj $decode_nj --epoch $num_epochs --avg $avg \
        --chunk-ms $chunk_ms exp/$s $lang data/fbank/libricss_cuts_$set.jsonl.gz libricss_$set
    done
  done
  stage_done 5 decode
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: score per LibriCSS condition (cpWER, ORC-WER, turn counting, turn latency)"
  for s in $systems; do
    for set in $eval_sets; do
      for sfx in $suffix $streaming_suffix; do
        sts_score exp/$s libricss_$set $sfx data/fbank/libricss_cuts_$set.jsonl.gz $lang $n_bootstrap \
          --group-by condition
      done
    done
  done
  stage_done 6 score
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "Stage 7: write $results"
  stage_done 7 results   # before writing, so the table has every stage's time
  set=$(echo $eval_sets | awk '{print $NF}')   # the last of --eval-sets (test by default)
  python -m serac.bin.write_multitalker_results --systems "$systems" --exp-root exp --set libricss_$set \
    --suffix $suffix --streaming-set libricss_$set --streaming-suffix $streaming_suffix --manifests data/manifests \
    --summary-sets "conv:train,conv:dev,libricss:$set" \
    --summary-title "Training conversations (simulated from LibriSpeech) and LibriCSS windows (channel $channel)" \
    --title "libricss / sts: separator-transducer-segmenter on LibriCSS" --timing exp/timing.tsv \
    --n-bootstrap $n_bootstrap --command "cd egs/libricss/sts && ./run.sh${command_line:+ $command_line}" --out $results
fi
echo "$0: succeeded"
