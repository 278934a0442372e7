#!/usr/bin/env bash
# Compute fbank features for the given splits of a lhotse corpus (one job per split through $cmd).
set -euo pipefail
echo "$0 $*"

cmd=utils/run.py
num_mel_bins=80
sampling_rate=16000
backend=auto
num_jobs=1
speed_perturb_train=""
help_message="Usage: $0 [options] <manifest-dir> <prefix> <splits (comma-separated)> <fbank-dir>
e.g.: $0 --num-mel-bins 23 --sampling-rate 8000 data/manifests yesno train,test data/fbank
Options:
  --cmd <cmd>                 # how to run jobs (default: $cmd)
  --num-mel-bins <n>          # default: $num_mel_bins
  --sampling-rate <hz>        # audio is resampled to this rate first (default: $sampling_rate)
  --backend <auto|kaldifeat|lhotse>
  --num-jobs <n>              # parallel feature jobs within each split
  --speed-perturb-train <f,f> # e.g. 0.9,1.1: add speed-perturbed copies of the training splits
                              # (train, and train-*/train_* such as LibriSpeech's train-clean-100)"

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 4 ]; then echo "$help_message" >&2; exit 1; fi
manifest_dir=$1; prefix=$2; splits=$3; fbank_dir=$4
mkdir -p "$fbank_dir/log"
for split in ${splits//,/ }; do
  if [ -f "$fbank_dir/${prefix}_cuts_${split}.jsonl.gz" ]; then
    echo "$0: $fbank_dir/${prefix}_cuts_${split}.jsonl.gz exists, skipping"; continue
  fi
  sp=""
  case $split in
    train|train-*|train_*) [ -n "$speed_perturb_train" ] && sp="--speed-perturb $speed_perturb_train" ;;
  esac
  $cmd --num-threads "$num_jobs" "$fbank_dir/log/fbank_${prefix}_${split}.log" \
    python -m serac.bin.compute_fbank --manifest-dir "$manifest_dir" --prefix "$prefix" --split "$split" \
      --out-dir "$fbank_dir" --num-mel-bins "$num_mel_bins" --sampling-rate "$sampling_rate" \
      --backend "$backend" --num-jobs "$num_jobs" $sp
done
echo "$0: done"
