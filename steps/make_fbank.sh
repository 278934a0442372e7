#!/usr/bin/env bash
# Compute fbank features for the given splits of a lhotse corpus (one job per split through $cmd).
# First steps/validate_data.sh checks the manifests and audio of the splits to do (what is skipped and why is
# printed here, and the job leaves the same items out); then each job writes <prefix>_feats_<split>.lca and
# <prefix>_cuts_<split>.jsonl.gz atomically and, last, the done marker .done/<prefix>_<split> holding the options.
# A split is skipped only when all three exist with the same options (a half-written split is recomputed; other
# options are an error). Cuts are one per supervision, named after it; multi-channel audio is downmixed.
set -euo pipefail
echo "$0 $*"

cmd=utils/run.py
num_mel_bins=80
sampling_rate=16000
backend=auto
num_jobs=1
speed_perturb_train=""
max_skipped_fraction=0.05
help_message="Usage: $0 [options] <manifest-dir> <prefix> <splits (comma-separated)> <fbank-dir>
e.g.: $0 --num-mel-bins 23 --sampling-rate 8000 data/manifests yesno train,test data/fbank
Options:
  --cmd <cmd>                 # how to run jobs (default: $cmd)
  --num-mel-bins <n>          # default: $num_mel_bins
  --sampling-rate <hz>        # audio at other rates is resampled to this first; audio below it is UPSAMPLED,
                              # which leaves the mel bins above its Nyquist empty (a warning says how many)
                              # (default: $sampling_rate)
  --backend <auto|kaldifeat|lhotse>
  --num-jobs <n>              # parallel feature processes within each split
  --speed-perturb-train <f,f> # e.g. 0.9,1.1: add speed-perturbed copies of the training splits
                              # (train, and train-*/train_* such as LibriSpeech's train-clean-100)
  --max-skipped-fraction <f>  # more skipped (bad) items than this share of a split is an error (default: $max_skipped_fraction)"

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 4 ]; then echo "$help_message" >&2; exit 1; fi
manifest_dir=$1; prefix=$2; splits=$3; fbank_dir=$4
mkdir -p "$fbank_dir/log"

options_of() {  # the done marker's first line (serac/bin/compute_fbank.py writes the same)
  echo "num_mel_bins=$num_mel_bins sampling_rate=$sampling_rate backend=$backend speed_perturb=$1"
}
speed_perturb_of() {
  case $1 in
    train|train-*|train_*) echo "$speed_perturb_train" ;;
    *) echo "" ;;
  esac
}

todo=()
for split in ${splits//,/ }; do
  marker=$fbank_dir/.done/${prefix}_${split}
  if [ -f "$fbank_dir/${prefix}_cuts_${split}.jsonl.gz" ] && [ -f "$fbank_dir/${prefix}_feats_${split}.lca" ] \
      && [ -f "$marker" ]; then
    made_with=$(head -n 1 "$marker")
    if [ "$made_with" = "$(options_of "$(speed_perturb_of $split)")" ]; then
      echo "$0: $fbank_dir/${prefix}_cuts_${split}.jsonl.gz is complete, skipping"; continue
    fi
    echo "$0: $fbank_dir/${prefix}_cuts_${split}.jsonl.gz was made with '$made_with', not" \
      "'$(options_of "$(speed_perturb_of $split)")': remove $marker to recompute, or use another fbank dir" >&2
    exit 1
  fi
  todo+=("$split")
done
[ ${#todo[@]} -eq 0 ] && { echo "$0: done"; exit 0; }

todo_splits=$(IFS=,; echo "${todo[*]}")
echo "$0: fbank of $prefix $todo_splits: $num_mel_bins mel bins at $sampling_rate Hz (--num-mel-bins, --sampling-rate)"
# splits made of ready cuts (no recordings manifest, e.g. simulated conversations) have no recordings to validate
validate=()
for split in "${todo[@]}"; do
  if [ -f "$manifest_dir/${prefix}_recordings_${split}.jsonl.gz" ] || \
     [ ! -f "$manifest_dir/${prefix}_cuts_${split}.jsonl.gz" ]; then validate+=("$split"); fi
done
if [ ${#validate[@]} -gt 0 ]; then
  steps/validate_data.sh --max-skipped-fraction "$max_skipped_fraction" --sampling-rate "$sampling_rate" \
    --num-mel-bins "$num_mel_bins" "$manifest_dir" "$prefix" "$(IFS=,; echo "${validate[*]}")" "$fbank_dir/validate"
fi

for split in "${todo[@]}"; do
  sp=$(speed_perturb_of $split)
  report=$fbank_dir/validate/${prefix}_${split}.json
  [ -f "$report" ] || report=
  log=$fbank_dir/log/fbank_${prefix}_${split}.log
  if ! $cmd --num-threads "$num_jobs" "$log" \
    python -m serac.bin.compute_fbank --manifest-dir "$manifest_dir" --prefix "$prefix" --split "$split" \
      --out-dir "$fbank_dir" --num-mel-bins "$num_mel_bins" --sampling-rate "$sampling_rate" \
      --backend "$backend" --num-jobs "$num_jobs" ${sp:+--speed-perturb "$sp"} \
      ${report:+--validation-report "$report"}; then
    echo "$0: fbank of $prefix $split failed:" >&2
    grep -m 3 "compute_fbank: \|Error" "$log" >&2 || true
    exit 1
  fi
  echo "$0: $prefix $split: $(sed -n 2p "$fbank_dir/.done/${prefix}_${split}") -> $fbank_dir/${prefix}_cuts_${split}.jsonl.gz"
done
echo "$0: done"
