#!/usr/bin/env bash
# Per-cohort WER of one decode: tables (tsv, md, json) and plots per cohort key.
# Attributes come from the supervisions of the cuts manifest the decode was run on;
# --cohort-map adds attributes found by a cohort-discovery method.
#
# Example (from a recipe directory):
#   steps/score_cohorts.sh --keys accent,gender,age_band,state \
#     exp/x/decode/test/recogs-test-greedy_search-epoch-5-avg-2.txt \
#     data/fbank/synth_cuts_test.jsonl.gz exp/x/decode/test/cohorts

echo "$0 $@"  # print the command line for logging

set -euo pipefail

keys=            # comma-separated attributes; empty: every attribute with 2..50 values
cohort_map=      # comma-separated cohort map TSVs (header "speaker<TAB>key" or "cut_id<TAB>key")
n_bootstrap=1000 # speaker resamples per cohort for the confidence interval; 0 disables it
seed=0
confidence=0.95
min_speakers=3   # cohorts with fewer speakers are marked too small to judge
cmd=             # e.g. "$decode_cmd"; empty: run here

help_message="Usage: $0 [options] <recogs-file> <cuts.jsonl.gz> <out-dir>
Per-cohort WER tables and plots for one decode.
e.g.: $0 --keys accent,gender exp/x/decode/test/recogs-test-greedy_search.txt \\
        data/fbank/synth_cuts_test.jsonl.gz exp/x/decode/test/cohorts
Options:
  --keys <k1,k2>         # cohort attributes to score (default: all with 2..50 values)
  --cohort-map <f1,f2>   # cohort map TSVs adding/overriding attributes
  --n-bootstrap <n>      # speaker bootstrap resamples (default: $n_bootstrap)
  --seed <n>             # bootstrap seed (default: $seed)
  --confidence <p>       # interval coverage (default: $confidence)
  --min-speakers <n>     # fewer speakers: marked too small to judge (default: $min_speakers)
  --cmd <cmd>            # job runner, e.g. \"\$decode_cmd\" (default: run locally)"

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 3 ]; then
  echo "$help_message" >&2
  exit 1
fi

recogs=$1
cuts=$2
out_dir=$3

for f in "$recogs" "$cuts"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done

mkdir -p "$out_dir/log"

opts=()
if [ -n "$keys" ]; then opts+=(--keys "$keys"); fi
if [ -n "$cohort_map" ]; then
  IFS=',' read -r -a maps <<< "$cohort_map"
  for m in "${maps[@]}"; do
    [ -f "$m" ] || { echo "$0: no such cohort map $m" >&2; exit 1; }
    opts+=(--cohort-map "$m")
  done
fi

score=(python3 -m serac.bin.score_cohorts
  --recogs "$recogs" --cuts "$cuts" --out-dir "$out_dir"
  --n-bootstrap "$n_bootstrap" --seed "$seed" --confidence "$confidence" --min-speakers "$min_speakers"
  ${opts[@]+"${opts[@]}"})

if [ -n "$cmd" ]; then
  $cmd "$out_dir/log/score_cohorts.log" "${score[@]}"
  tail -n 20 "$out_dir/log/score_cohorts.log" | grep -v '^#' || true
else
  "${score[@]}" 2>&1 | tee "$out_dir/log/score_cohorts.log"
fi

echo "$0: per-cohort tables and plots in $out_dir"
