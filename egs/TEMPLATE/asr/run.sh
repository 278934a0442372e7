#!/usr/bin/env bash
# TEMPLATE/asr: your own corpus to per-cohort WER (docs/your-corpus.md). Copy this directory to
# egs/<corpus>/asr, keep asr.sh as a link to ../../TEMPLATE/asr/asr.sh, and set the defaults below.
#
#   # a folder of audio + <split>.tsv transcript tables (local/prepare_manifests.py says the format)
#   ./run.sh --corpus-dir /data/mycorpus --prefix mycorpus --cohort-keys speaker,accent
#   # lhotse manifests you already have: <prefix>_{recordings,supervisions}_<split>.jsonl.gz
#   ./run.sh --manifest-dir /data/mycorpus/manifests --prefix mycorpus --cohort-keys gender
#   ./run.sh --stage 5 --stop-stage 6 ...     # re-decode and re-score only
#
# Stages: 0 check the inputs, 1 manifests (from --corpus-dir; skipped with --manifest-dir), then asr.sh:
# 2 check the manifests and compute fbank, 3 lang, 4 train, 5 decode, 6 score (per cohort with --cohort-keys).
set -euo pipefail
echo "$0 $*"

stage=0
stop_stage=6
corpus_dir=            # a folder of audio files and <split>.tsv tables
manifest_dir=          # or: existing lhotse manifests (used in place)
prefix=mycorpus        # manifest name prefix
train_set=train
valid_set=dev          # validation loss per epoch (reported only); may be the test split on a tiny corpus
test_sets="test"
cohort_keys=           # e.g. speaker,gender,accent; empty: WER only
sampling_rate=auto     # auto: the corpus's own rate
num_mel_bins=auto      # auto: 23 at <= 8 kHz, 80 above
lang_kind=word         # word (small vocabularies), char, or bpe with --vocab-size
vocab_size=500
train_config=conf/lstm.yaml
train_opts=
exp_dir=exp/lstm
num_epochs=
seed=
num_threads=2
avg=5
nj=1
n_bootstrap=1000
help_message="Usage: $0 (--corpus-dir DIR | --manifest-dir DIR) [--prefix NAME] [options]
Options:
  --stage <n> --stop-stage <m>    # default: $stage-$stop_stage
  --corpus-dir <dir>              # audio + <split>.tsv tables (columns audio, text, [id, speaker, gender, language, ...])
  --manifest-dir <dir>            # lhotse manifests <prefix>_{recordings,supervisions}_<split>.jsonl.gz
  --prefix <name>                 # default: $prefix
  --train-set <split> --valid-set <split> --test-sets <\"s1 s2\">   # default: $train_set, $valid_set, \"$test_sets\"
  --cohort-keys <k1,k2>           # supervision attributes scored per cohort (custom fields included)
  --sampling-rate <hz|auto> --num-mel-bins <n|auto>
  --lang-kind <word|char|bpe> --vocab-size <n>
  --train-config <yaml> --train-opts <str> --exp-dir <dir> --num-epochs <n> --seed <n> --num-threads <n>
  --avg <n> --nj <n> --n-bootstrap <n>"

cd "$(dirname "$(readlink -f "$0")")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then echo "$help_message" >&2; exit 1; fi
if [ -n "$corpus_dir" ] && [ -n "$manifest_dir" ]; then
  echo "$0: give --corpus-dir or --manifest-dir, not both" >&2; exit 1
fi
if [ -z "$corpus_dir" ] && [ -z "$manifest_dir" ]; then echo "$help_message" >&2; exit 1; fi

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: check the inputs"
  dir=${corpus_dir:-$manifest_dir}
  [ -d "$dir" ] || { echo "$0: $dir: no such directory" >&2; exit 1; }
  echo "using $dir"
fi

if [ -n "$corpus_dir" ]; then
  corpus_dir=$(readlink -f "$corpus_dir")
  manifest_dir=data/manifests
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: lhotse manifests"
  if [ -z "$corpus_dir" ]; then
    echo "using the manifests in $manifest_dir"
  elif [ -f "$manifest_dir/${prefix}_supervisions_$train_set.jsonl.gz" ]; then
    echo "$manifest_dir exists, skipping"
  else
    python3 local/prepare_manifests.py --corpus-dir "$corpus_dir" --prefix "$prefix" --out-dir "$manifest_dir"
  fi
fi

if [ $stop_stage -ge 2 ]; then
  ./asr.sh --stage $((stage > 2 ? stage : 2)) --stop-stage $stop_stage --manifest-dir "$manifest_dir" \
    --prefix "$prefix" --train-set "$train_set" --valid-set "$valid_set" --test-sets "$test_sets" \
    --cohort-keys "$cohort_keys" --sampling-rate "$sampling_rate" --num-mel-bins "$num_mel_bins" \
    --lang-kind "$lang_kind" --vocab-size "$vocab_size" --train-config "$train_config" --train-opts "$train_opts" \
    --exp-dir "$exp_dir" ${num_epochs:+--num-epochs $num_epochs} ${seed:+--seed $seed} \
    --num-threads "$num_threads" --avg "$avg" --nj "$nj" --n-bootstrap "$n_bootstrap"
fi
echo "$0: succeeded"
