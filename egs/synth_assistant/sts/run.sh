#!/usr/bin/env bash
# synth_assistant/sts: the separator-transducer-segmenter (Sklyar et al., Interspeech 2022) on simulated
# two-party conversations made from the built-in synthetic corpus (no download). See docs/sts.md.
#
#   ./run.sh                                   # stages 0-3 (what phase 1 implements): corpus, conversations,
#                                              # fbank, BPE with the turn tokens
#   ./run.sh --stage 1 --stop-stage 1 --conversations train:4000,dev:200,test:1000 --overlap-ratios 0,0.2,0.4
#
# Stages: 0 generate the single-speaker source corpus (the asr recipe's generator), 1 simulate conversations
# (lhotse MixedCuts; speakers disjoint across train/dev/test), 2 fbank of the mixtures, 3 BPE with <sot>/<eot>,
# 4 train, 5 decode, 6 score (cpWER, ORC-WER, turn counting, turn latency), 7 RESULTS.md.
# Stages 4-7 need the trainer's and decoder's model registry to know the STS model (docs/sts.md#status): until
# then they stop with an error saying so.
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=3
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
help_message="Usage: $0 [--stage N] [--stop-stage M] [--num-speakers N] [--utts-per-speaker N] [--gen-opts \"...\"]
          [--seed S] [--conversations train:N,dev:N,test:N] [--speakers MIN,MAX] [--turns MIN,MAX]
          [--overlap-ratios R,R,...] [--pause MIN,MAX] [--vocab-size N]"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi

splits=$(echo "$conversations" | sed 's/:[0-9]*//g')   # train,dev,test
lang=data/lang_bpe_${vocab_size}_turns

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: generate the single-speaker source corpus"
  [ -x "$asr_dir/local/generate.sh" ] || { echo "$0: $asr_dir/local/generate.sh not found (--asr-dir)" >&2; exit 1; }
  "$asr_dir/local/generate.sh" --cmd "$train_cmd" --seed $seed --nj $gen_nj --num-speakers $num_speakers \
    --utts-per-speaker $utts_per_speaker --extra-opts "$gen_opts" $corpus_dir data/source
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: simulate conversations ($conversations)"
  opts="--manifest-dir data/source --prefix synth --splits $conversations --out-dir data/manifests --out-prefix conv
    --seed $seed --speakers $speakers --turns $turns --overlap-ratios $overlap_ratios --pause $pause --nj $sim_nj"
  done_all=true
  for split in ${splits//,/ }; do [ -f data/manifests/conv_cuts_$split.jsonl.gz ] || done_all=false; done
  if $done_all; then
    echo "$0: data/manifests/conv_cuts_{$splits}.jsonl.gz exist; skipping"
  else
    $train_cmd JOB=1:$sim_nj data/manifests/log/simulate.JOB.log \
      python -m serac.bin.simulate_conversations $opts --job JOB
    python -m serac.bin.simulate_conversations $opts --merge
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: fbank of the mixtures (80 bins, 16 kHz)"
  steps/make_fbank.sh --cmd "$train_cmd" --num-mel-bins 80 --sampling-rate 16000 --num-jobs $fbank_nj \
    data/manifests conv $splits data/fbank
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: BPE ($vocab_size) with the turn tokens <sot> <eot>"
  steps/prepare_lang.sh --kind bpe --vocab-size $vocab_size --extra-symbols "<sot> <eot>" \
    data/fbank/conv_cuts_train.jsonl.gz $lang
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: train the STS model" >&2
  echo "$0: stages 4-7 (train, decode, score, RESULTS.md) are not implemented yet: the STS model" \
    "(serac/multitalker/model.py) needs the trainer's and decoder's model registry (docs/sts.md#status)" >&2
  exit 1
fi
echo "$0: succeeded"
