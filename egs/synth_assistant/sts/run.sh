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
#
# Stages: 0 generate the single-speaker source corpus (the asr recipe's generator), 1 simulate conversations
# (lhotse MixedCuts; speakers disjoint across train/dev/test), 2 fbank of the mixtures, 3 BPE with <sot>/<eot>,
# 4 train the systems (conf/<system>.yaml: sts, and the baselines mt_rnnt = no turn tokens, sts_no_penalty,
# sts_no_fastemit), 5 decode test (greedy, steps/decode.sh) and stream dev (steps/decode_streaming.sh),
# 6 score (serac.bin.score_multitalker: cpWER, ORC-WER, turn counting, turn latency, per overlap bin),
# 7 RESULTS.md (serac.bin.write_multitalker_results: the systems, the paper's claims side by side).
# Stage wall times go to exp/timing.tsv (and into RESULTS.md).
set -euo pipefail
echo "$0 $*"
command_line="$*"

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
init_from=               # a single-talker checkpoint for the systems whose conf has train.init_modules (sts_init),
                         # e.g. ../asr/exp/lstm/epoch-15.pt: the asr recipe's model (its recipe runs first, ~40 min
                         # on one thread, so the default systems do not need it)
init_lang_dir=           # that model's lang dir (default: data/lang_bpe_64 beside its exp dir's recipe)
# decoding and scoring (stages 5-6)
decode_nj=2
chunk_ms=160             # streaming chunk (dev set)
gap_s=0.5                # systems without turn tokens: a silence longer than this ends a turn
n_bootstrap=1000
results=RESULTS.md
help_message="Usage: $0 [--stage N] [--stop-stage M] [--num-speakers N] [--utts-per-speaker N] [--gen-opts \"...\"]
          [--seed S] [--conversations train:N,dev:N,test:N] [--speakers MIN,MAX] [--turns MIN,MAX]
          [--overlap-ratios R,R,...] [--pause MIN,MAX] [--vocab-size N] [--systems \"sts mt_rnnt ...\"]
          [--num-epochs N] [--avg N] [--train-threads N] [--train-parallel N] [--train-opts \"...\"]
          [--init-from CHECKPOINT] [--init-lang-dir DIR]
          [--decode-nj N] [--chunk-ms MS] [--gap-s S] [--n-bootstrap N] [--results FILE]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi

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
  for s in $systems; do grep -h "epoch $num_epochs:" exp/$s/log/train-*.log | tail -n 1 | sed "s/^/$s: /" || true; done
  stage_done 4 train
fi

suffix=$(python -m serac.bin.decode --print-suffix --method greedy_search --epoch $num_epochs --avg $avg)
streaming_suffix=$(python -m serac.bin.decode_streaming --print-suffix --chunk-ms $chunk_ms --epoch $num_epochs --avg $avg)
if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "Stage 5: decode test (greedy search) and stream dev (${chunk_ms} ms chunks)"
  for s in $systems; do
    steps/decode.sh --cmd "$decode_cmd" --nj $decode_nj --epoch $num_epochs --avg $avg --method greedy_search \
      exp/$s $lang data/fbank/conv_cuts_test.jsonl.gz test
    steps/decode_streaming.sh --cmd "$decode_cmd" --nj $decode_nj --epoch $num_epochs --avg $avg --chunk-ms $chunk_ms \
      exp/$s $lang data/fbank/conv_cuts_dev.jsonl.gz dev
  done
  stage_done 5 decode
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: score (cpWER, ORC-WER, turn counting, turn latency; overall and per overlap bin)"
  for s in $systems; do
    for d in "test $suffix" "dev $streaming_suffix"; do
      read -r set_name sfx <<< "$d"
      sts_score exp/$s $set_name $sfx data/fbank/conv_cuts_$set_name.jsonl.gz $lang $n_bootstrap
    done
  done
  stage_done 6 score
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "Stage 7: write $results"
  stage_done 7 results   # before writing, so the table has every stage's time
  python -m serac.bin.write_multitalker_results --systems "$systems" --exp-root exp --set test --suffix $suffix \
    --streaming-set dev --streaming-suffix $streaming_suffix --manifests data/manifests --timing exp/timing.tsv \
    --n-bootstrap $n_bootstrap --command "cd egs/synth_assistant/sts && ./run.sh $command_line" --out $results
fi
echo "$0: succeeded"
