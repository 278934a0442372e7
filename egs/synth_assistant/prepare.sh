#!/usr/bin/env bash
# The synth_assistant corpus preparation that every task of this corpus shares (icefall's prepare.sh): the
# synthetic multi-accent voice-assistant corpus is generated, its manifests checked and summarised, fbank
# features computed and the BPE inventory and a token n-gram LM trained on the training transcripts.
#
# The corpus is prepared once, in the asr task (its data/ and download/); the other tasks (amortized, fairness)
# link those folders into their own data/ with --home, preparing the corpus there first if it has not been:
#
#   ./prepare.sh                                   # in egs/synth_assistant/asr: stages 0-3 (run.sh does this)
#   ./prepare.sh --num-speakers 4000 --nj 64       # a large corpus (about 100 h: see README.md)
#   ./prepare.sh --home ../asr --vocab-size 64     # in another task: use (or make) ../asr's corpus, read only
#
# Stages: 0 generate, 1 check manifests and summarise the corpus, 2 fbank (80 bins, 16 kHz), 3 BPE and a token
# n-gram LM on the training transcripts. Every stage skips finished work.
# (Each task links this file as its prepare.sh.)
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=3
home=.                 # the task whose data/ holds the prepared corpus; another one is linked into ./data
# corpus
num_speakers=300       # training speakers (empty: the generator default, 150)
utts_per_speaker=      # utterances per training speaker (empty: generator default)
hours=                 # alternatively: hours of training audio
seed=1
dev_speakers=100       # dev / test speakers drawn from the population (then topped up to every accent and region:
test_speakers=250      # ~1200 / ~3000 utterances); a 3% relative WER difference needs ~200-230 test speakers to be
                       # decided (README.md); until 2026-12-01 these recipes had the generator's defaults, 20 / 40
adapt_speakers=10      # held-out adapt speakers per region (the fairness recipe's fine-tuning pool: 20 speakers,
                       # ~17 min for its two targeted regions); the generator's default, 3, until 2026-12-01
gen_opts=              # more generator options, e.g. "--dev-speakers 8 --test-speakers 8" (see local/generate.sh)
corpus_dir=download/synth
prefix=synth
nj=2                   # parallel jobs (generation, features)
vocab_size=64
lm_order=6             # token n-gram LM on the training transcripts, for shallow fusion in beam search
help_message="Usage: $0 [--stage N] [--stop-stage M] [--home DIR] [--num-speakers N] [--utts-per-speaker N | --hours H]
          [--dev-speakers N] [--test-speakers N] [--adapt-speakers N] [--seed S] [--gen-opts \"...\"] [--nj N] [--vocab-size N]
          [--lm-order N]"

cd "$(dirname "$0")"
. ./path.sh
[ -f ./cmd.sh ] && . ./cmd.sh
. utils/parse_options.sh
if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi

lang=data/lang_bpe_$vocab_size
splits=train,dev,test,adapt

if [ "$(readlink -f "$home")" != "$(pwd -P)" ]; then
  # another task prepares (or has prepared) the corpus: link its folders, read only
  shared=$(readlink -f "$home")
  [ -d "$shared" ] || { echo "$0: --home $home: no such directory" >&2; exit 1; }
  if [ ! -f "$shared/data/fbank/${prefix}_cuts_test.jsonl.gz" ] || [ ! -f "$shared/$lang/tokens.txt" ]; then
    echo "no features or BPE $vocab_size in $shared: preparing the corpus there"
    (cd "$shared" && ./prepare.sh --vocab-size $vocab_size --lm-order $lm_order --nj $nj)
  fi
  mkdir -p data
  # the manifests store feature and audio paths relative to the task (data/fbank/..., download/...): the links
  # resolve them here
  ln -sfn "$shared/data/fbank" data/fbank
  ln -sfn "$shared/$lang" $lang
  [ -f "$shared/data/manifests/summary.md" ] && ln -sfn "$shared/data/manifests" data/manifests
  [ -d "$shared/download" ] && ln -sfn "$shared/download" download
  echo "$0: the corpus of $shared is linked into $(pwd)/data"
  exit 0
fi

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: generate the synthetic corpus"
  opts="--seed $seed --nj $nj"
  [ -n "$num_speakers" ] && opts="$opts --num-speakers $num_speakers"
  [ -n "$utts_per_speaker" ] && opts="$opts --utts-per-speaker $utts_per_speaker"
  [ -n "$hours" ] && opts="$opts --hours $hours"
  local/generate.sh --cmd "${train_cmd:-utils/run.py}" --prefix $prefix $opts \
    --extra-opts "--dev-speakers $dev_speakers --test-speakers $test_speakers --adapt-speakers-per-region $adapt_speakers $gen_opts" \
    $corpus_dir data/manifests
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: check the manifests and summarise the corpus"
  python -m serac.bin.corpus_summary --manifest-dir data/manifests --prefix $prefix --splits $splits \
    --out data/manifests/summary.md
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "Stage 2: fbank (80 bins, 16 kHz)"
  steps/make_fbank.sh --cmd "${train_cmd:-utils/run.py}" --num-mel-bins 80 --sampling-rate 16000 --num-jobs $nj \
    data/manifests $prefix $splits data/fbank
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "Stage 3: BPE ($vocab_size)"
  steps/prepare_lang.sh --kind bpe --vocab-size $vocab_size data/fbank/${prefix}_cuts_train.jsonl.gz $lang
  python -m serac.bin.train_lm --lang-dir $lang --order $lm_order --out $lang/lm-${lm_order}gram.arpa
fi
