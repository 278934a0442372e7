#!/usr/bin/env bash
# synth_assistant/sts: the separator-transducer-segmenter (Sklyar et al., Interspeech 2022) on simulated
# two-party conversations made from the built-in synthetic corpus (no download). See docs/sts.md.
#
#   ./run.sh                                   # everything: corpus, conversations, fbank, BPE, four models,
#                                              # decoding, scoring, RESULTS.md
#   ./run.sh --stage 1 --stop-stage 1 --conversations train:4000,dev:200,test:1000 --overlap-ratios 0,0.2,0.4
#   ./run.sh --stage 4 --systems "sts mt_rnnt" --num-epochs 10     # fewer systems, longer training
#   # STS initialised from the asr recipe's single-talker model (run ../asr first; docs/sts.md):
#   ./run.sh --stage 4 --systems "sts sts_init" --init-from ../asr/exp/lstm/epoch-15.pt
#   # ... and the single-speaker floor: that model, not trained further, decoding each mixture as one stream
#   ./run.sh --stage 4 --systems "sts_init single_talker" --init-from ../asr/exp/lstm/epoch-15.pt
#
# Stages: 0 generate the single-speaker source corpus (the asr recipe's generator), 1 simulate conversations
# (lhotse MixedCuts; speakers disjoint across train/dev/test), 2 fbank of the mixtures, 3 BPE with <sot>/<eot>,
# 4 train the systems (conf/<system>.yaml: sts, and the baselines mt_rnnt = no turn tokens, sts_no_penalty,
# sts_no_fastemit; a conf with train.num_epochs 0, single_talker, trains nothing: exp/<system> links the --init-from
# model, the single-speaker floor), 5 decode test (greedy, steps/decode.sh) and stream dev (steps/decode_streaming.sh),
# 6 score (serac.bin.score_multitalker: cpWER, ORC-WER, turn counting, turn latency, per overlap bin),
# 7 RESULTS.md (serac.bin.write_multitalker_results: the systems, the paper's claims side by side).
# Stage wall times go to exp/timing.tsv (and into RESULTS.md).
set -euo pipefail
echo "$0 $*"
command_line=""   # the options, quoted, so that the command RESULTS.md names repeats the run as it was typed
[ $# -eq 0 ] || { command_line=$(printf "%q " "$@"); command_line=${command_line% }; }

stage=0
stop_stage=7
# source corpus (stage 0)
num_speakers=60          # training speakers of the source corpus
utts_per_speaker=12
gen_opts=                # more generator options, e.g. "--dev-speakers 8 --test-speakers 12"
gen_nj=2
seed=1
corpus_dir=download/synth
asr_dir=../asr           # the recipe whose local/generate.sh makes the source corpus
# conversations (stage 1)
conversations=train:1000,dev:100,test:1000   # split:number of conversations
speakers=2,2             # min,max speakers per conversation
turns=3,6                # min,max turns per conversation
overlap_ratios=0,0.1,0.2,0.3,0.4             # target overlap ratio, one drawn per conversation
pause=0.1,1.0            # min,max pause (s) between non-overlapping turns
sim_nj=2
fbank_nj=2               # feature jobs per split
# lang (stage 3)
vocab_size=128
# training (stage 4)
systems="sts mt_rnnt sts_no_penalty sts_no_fastemit"   # conf/<system>.yaml each, exp/<system>
num_epochs=6
avg=2
train_threads=1          # torch threads per training
train_parallel=2         # trainings run at once
train_opts=              # e.g. "--set data.max_duration=30"
init_from=               # a single-talker checkpoint for the systems whose conf has train.init_modules (sts_init)
                         # or train.num_epochs 0 (single_talker, the floor: this model decodes the mixtures),
                         # e.g. ../asr/exp/lstm/epoch-15.pt: the asr recipe's model (its recipe runs first, ~40 min
                         # on one thread, so the default systems do not need it)
init_lang_dir=           # that model's lang dir (default: data/lang_bpe_64 beside its exp dir's recipe)
# decoding and scoring (stages 5-6)
decode_nj=2
chunk_ms=160             # streaming chunk (dev set)
gap_s=0.5                # systems without turn tokens: a silence longer than this ends a turn
n_bootstrap=1000
results=RESULTS.md
results_note=            # a file whose paragraph goes under the title of $results (e.g. which parts ran where)
help_message="Usage: $0 [--stage N] [--stop-stage M] [--num-speakers N] [--utts-per-speaker N] [--gen-opts \"...\"]
          [--seed S] [--conversations train:N,dev:N,test:N] [--speakers MIN,MAX] [--turns MIN,MAX]
          [--overlap-ratios R,R,...] [--pause MIN,MAX] [--vocab-size N] [--systems \"sts mt_rnnt ...\"]
          [--num-epochs N] [--avg N] [--train-threads N] [--train-parallel N] [--train-opts \"...\"]
          [--init-from CHECKPOINT] [--init-lang-dir DIR]
          [--decode-nj N] [--chunk-ms MS] [--gap-s S] [--n-bootstrap N] [--results FILE] [--results-note FILE]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi
[ -z "$results_note" ] || [ -f "$results_note" ] || { echo "$0: --results-note $results_note not found" >&2; exit 1; }

splits=$(echo "$conversations" | sed 's/:[0-9]*//g')   # train,dev,test
lang=data/lang_bpe_${vocab_size}_turns
mkdir -p exp/log
. utils/stage_utils.sh exp/timing.tsv   # stage_done N name: the stage's wall time into exp/timing.tsv
. utils/sts_utils.sh                    # sts_check_systems, sts_init_opts, sts_score

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: generate the single-speaker source corpus"
  [ -x "$asr_dir/local/generate.sh" ] || { echo "$0: $asr_dir/local/generate.sh not found (--asr-dir)" >&2; exit 1; }
  "$asr_dir/local/generate.sh" --cmd "$train_cmd" --seed $seed --nj $gen_nj --num-speakers $num_speakers \
    --utts-per-speaker $utts_per_speaker --extra-opts "$gen_opts" $corpus_dir data/source
  stage_done 0 corpus
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: simulate conversations ($conversations)"
  steps/simulate_conversations.sh --cmd "$train_cmd" --nj $sim_nj --opts "--seed $seed --speakers $speakers
    --turns $turns --overlap-ratios $overlap_ratios --pause $pause" data/source synth $conversations data/manifests
  stage_done 1 conversations
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: fbank of the mixtures (80 bins, 16 kHz)"
  steps/make_fbank.sh --cmd "$train_cmd" --num-mel-bins 80 --sampling-rate 16000 --num-jobs $fbank_nj \
    data/manifests conv $splits data/fbank
  stage_done 2 fbank
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: BPE ($vocab_size) with the turn tokens <sot> <eot>"
  steps/prepare_lang.sh --kind bpe --vocab-size $vocab_size --extra-symbols "<sot> <eot>" \
    data/fbank/conv_cuts_train.jsonl.gz $lang
  stage_done 3 lang
fi

link_floor() {  # link_floor NAME: exp/NAME holds the --init-from model as it is: checkpoint, config.yaml, lang dir
  local ckpt config epoch
  ckpt=$(readlink -f "$init_from")
  config=$(dirname "$ckpt")/config.yaml
  [ -f "$config" ] || { echo "$0: $config not found: system $1 needs the config.yaml of $init_from's exp dir" >&2; return 1; }
  if [ -L exp/$1/lang ]; then
    [ "$(readlink -f exp/$1/epoch-*.pt)" = "$ckpt" ] || { echo "$0: exp/$1 links another model" \
      "($(readlink -f exp/$1/epoch-*.pt)), not $ckpt: remove exp/$1 to decode this one" >&2; return 1; }
    echo "$0: exp/$1 links $ckpt; skipping"; return 0
  fi
  epoch=$(python -c "import sys; from serac.checkpoint import load_checkpoint; print(load_checkpoint(sys.argv[1])['epoch'])" \
    "$ckpt") || { echo "$0: cannot read the epoch of $ckpt" >&2; return 1; }
  mkdir -p exp/$1
  cp "$config" exp/$1/config.yaml   # the model's own (what decoding builds it from is inside the checkpoint)
  ln -s "$ckpt" exp/$1/epoch-$epoch.pt
  ln -s "$(readlink -f "$init_lang_dir")" exp/$1/lang
  echo "$0: $1 is $ckpt (epoch $epoch) with $init_lang_dir, not trained further"
}

train_system() {  # train_system NAME: conf/NAME.yaml into exp/NAME
  steps/train.sh --cmd "$train_cmd" --train-config conf/$1.yaml --num-epochs $num_epochs \
    --num-threads $train_threads --train-opts "$train_opts $(sts_init_opts $1)" \
    $lang data/fbank/conv_cuts_train.jsonl.gz data/fbank/conv_cuts_dev.jsonl.gz exp/$1
}

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: train $systems ($num_epochs epochs, $train_parallel at a time)"
  sts_check_systems "$systems"
  pids=()
  for s in $systems; do
    if sts_is_floor $s; then link_floor $s; continue; fi
    train_system $s > exp/log/train-$s.out 2>&1 &
    pids+=($!)
    echo "training $s (exp/$s/log/train-*.log, exp/log/train-$s.out)"
    if [ ${#pids[@]} -ge $train_parallel ]; then
      wait ${pids[0]} || { echo "$0: a training failed: see exp/log/train-*.out" >&2; exit 1; }
      pids=("${pids[@]:1}")
    fi
  done
  for p in ${pids[@]+"${pids[@]}"}; do
    wait $p || { echo "$0: a training failed: see exp/log/train-*.out" >&2; exit 1; }
  done
  for s in $systems; do
    [ -f exp/$s/log/train.log ] && grep -h "epoch $num_epochs:" exp/$s/log/train-*.log | tail -n 1 | sed "s/^/$s: /" || true
  done
  stage_done 4 train
fi

suffix=$(python -m serac.bin.decode --print-suffix --method greedy_search --epoch $num_epochs --avg $avg)
streaming_suffix=$(python -m serac.bin.decode_streaming --print-suffix --chunk-ms $chunk_ms --epoch $num_epochs --avg $avg)
decode_setting() {  # decode_setting NAME: sets sys_{epoch,avg,lang,suffix,streaming_suffix} of system NAME: the
  # floor's one checkpoint and lang dir (exp/NAME/lang, stage 4), or the recipe's last epochs and lang
  if [ -L exp/$1/lang ]; then
    sys_epoch=$(basename exp/$1/epoch-*.pt .pt); sys_epoch=${sys_epoch#epoch-}; sys_avg=1; sys_lang=exp/$1/lang
    sys_suffix=$(python -m serac.bin.decode --print-suffix --method greedy_search --epoch $sys_epoch --avg 1)
    sys_streaming_suffix=$(python -m serac.bin.decode_streaming --print-suffix --chunk-ms $chunk_ms --epoch $sys_epoch --avg 1)
  else
    sys_epoch=$num_epochs; sys_avg=$avg; sys_lang=$lang; sys_suffix=$suffix; sys_streaming_suffix=$streaming_suffix
  fi
}
if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "Stage 5: decode test (greedy search) and stream dev (${chunk_ms} ms chunks)"
  for s in $systems; do
    decode_setting $s   # --conversations: the floor (a single-talker model) decodes each mixture as one stream
    steps/decode.sh --cmd "$decode_cmd" --nj $decode_nj --epoch $sys_epoch --avg $sys_avg --method greedy_search \
      --conversations true exp/$s $sys_lang data/fbank/conv_cuts_test.jsonl.gz test
    steps/decode_streaming.sh --cmd "$decode_cmd" --nj $decode_nj --epoch $sys_epoch --avg $sys_avg \
      --chunk-ms $chunk_ms --conversations true exp/$s $sys_lang data/fbank/conv_cuts_dev.jsonl.gz dev
  done
  stage_done 5 decode
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: score (cpWER, ORC-WER, turn counting, turn latency; overall and per overlap bin)"
  for s in $systems; do
    decode_setting $s
    for d in "test $sys_suffix" "dev $sys_streaming_suffix"; do
      read -r set_name sfx <<< "$d"
      sts_score exp/$s $set_name $sfx data/fbank/conv_cuts_$set_name.jsonl.gz $sys_lang $n_bootstrap
    done
  done
  stage_done 6 score
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "Stage 7: write $results"
  stage_done 7 results   # before writing, so the table has every stage's time
  own_suffixes=()        # systems decoded at another epoch than the recipe's (the floor)
  for s in $systems; do
    decode_setting $s
    [ $sys_suffix = $suffix ] || own_suffixes+=(--suffix-of $s=$sys_suffix --streaming-suffix-of $s=$sys_streaming_suffix)
  done
  python -m serac.bin.write_multitalker_results --systems "$systems" --exp-root exp --set test --suffix $suffix \
    --streaming-set dev --streaming-suffix $streaming_suffix ${own_suffixes[@]+"${own_suffixes[@]}"} \
    --manifests data/manifests --timing exp/timing.tsv \
    --n-bootstrap $n_bootstrap --command "cd egs/synth_assistant/sts && ./run.sh${command_line:+ $command_line}" --out $results \
    --note "$([ -z "$results_note" ] || cat "$results_note")"
fi
echo "$0: succeeded"
