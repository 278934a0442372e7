#!/usr/bin/env bash
# Check a corpus's lhotse manifests and audio before features are computed (steps/make_fbank.sh runs it).
# Prints per split what is kept, what is skipped and why (missing, unreadable, truncated or NaN audio,
# supervisions outside their audio, ...), repeated entries dropped, warnings, and what the feature stage does with
# the source sampling rates; writes <out-dir>/<prefix>_<split>.json, which the feature stage reads to skip the same
# items. Exits 1 naming the file on a corrupt manifest, conflicting duplicate ids, or too much skipped.
# The cases and what happens in each: docs/faults.md.
set -euo pipefail
echo "$0 $*"

max_skipped_fraction=0.05
sampling_rate=0
num_mel_bins=0
help_message="Usage: $0 [options] <manifest-dir> <prefix> <splits (comma-separated)> <out-dir>
e.g.: $0 --sampling-rate 8000 --num-mel-bins 23 data/manifests yesno train,test data/fbank/validate
Options:
  --max-skipped-fraction <f>  # more skipped items than this share of a split is an error (default: $max_skipped_fraction)
  --sampling-rate <hz>        # the feature stage's rate: report resampling / upsampling (default: not reported)
  --num-mel-bins <n>          # the feature stage's bins: report bins left empty by upsampling"

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 4 ]; then echo "$help_message" >&2; exit 1; fi
python -m serac.bin.validate_data --manifest-dir "$1" --prefix "$2" --splits "$3" --out-dir "$4" \
  --max-skipped-fraction "$max_skipped_fraction" --sampling-rate "$sampling_rate" --num-mel-bins "$num_mel_bins"
