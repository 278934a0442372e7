#!/usr/bin/env bash
# Discover cohorts with high WER on one decode (dev) and apply them to another (test): geographic clustering
# tree, geodemographic partition, or automatic (speaker embeddings + k-means); see serac/bin/discover_cohorts.py.
# Writes <out-dir>/cohort-map.tsv (usable as steps/score_cohorts.sh --cohort-map), model.json, summary.{json,md}
# and, for the tree, map-fit.png / map-eval.png.
#
# Example (from a recipe directory):
#   steps/discover_cohorts.sh --method geo --discover-opts "--max-leaves 8 --min-speakers 3" \
#     --eval-recogs exp/x/decode/test/recogs-test-greedy_search-epoch-12-avg-4.txt \
#     --eval-cuts data/fbank/synth_cuts_test.jsonl.gz --label-cuts data/fbank/synth_cuts_adapt.jsonl.gz \
#     exp/x/decode/dev/recogs-dev-greedy_search-epoch-12-avg-4.txt data/fbank/synth_cuts_dev.jsonl.gz exp/discovery/geo

echo "$0 $@"  # print the command line for logging

set -euo pipefail

method=geo        # geo | geodemo | auto | given
eval_recogs=      # decode to evaluate the discovered cohorts on (test)
eval_cuts=
label_cuts=       # comma-separated manifests whose speakers also get a cohort (e.g. adapt, train)
discover_opts=    # more options for serac.bin.discover_cohorts, e.g. "--max-leaves 8" or "--embedding fbank-stats"
num_threads=1
cmd=utils/run.py
force=false       # true: redo even if <out-dir>/summary.json exists

help_message="Usage: $0 [options] <fit-recogs> <fit-cuts.jsonl.gz> <out-dir>
Options:
  --method <geo|geodemo|auto|given>  # discovery method (default: $method)
  --eval-recogs <recogs> --eval-cuts <cuts>   # apply the fitted cohorts to this decode and evaluate them
  --label-cuts <c1,c2>               # label these manifests' speakers too (geo, geodemo, given: by attributes;
                                     # auto: nearest centroid of their embeddings)
  --discover-opts <string>           # passed to serac.bin.discover_cohorts
  --num-threads <n>                  # torch threads (auto: embedding extraction)
  --cmd <cmd>                        # \$train_cmd from cmd.sh
  --force <true|false>               # redo a finished discovery"

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 3 ]; then
  echo "$help_message" >&2
  exit 1
fi
fit_recogs=$1
fit_cuts=$2
out_dir=$3

for f in "$fit_recogs" "$fit_cuts" ${eval_recogs:+"$eval_recogs"} ${eval_cuts:+"$eval_cuts"}; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
if [ -f "$out_dir/summary.json" ] && [ "$force" != true ]; then
  echo "$0: $out_dir/summary.json exists, skipping (--force true to redo)"
  exit 0
fi
mkdir -p "$out_dir/log"

opts=(--method "$method" --fit-recogs "$fit_recogs" --fit-cuts "$fit_cuts" --out-dir "$out_dir"
      --num-threads "$num_threads")
[ -n "$eval_recogs" ] && opts+=(--eval-recogs "$eval_recogs" --eval-cuts "$eval_cuts")
if [ -n "$label_cuts" ]; then
  IFS=',' read -r -a lcs <<< "$label_cuts"
  for c in "${lcs[@]}"; do opts+=(--label-cuts "$c"); done
fi

# shellcheck disable=SC2086
$cmd --num-threads "$num_threads" "$out_dir/log/discover.log" \
  python -m serac.bin.discover_cohorts "${opts[@]}" $discover_opts
grep -h "^- " "$out_dir/summary.md" || true
echo "$0: cohort map $out_dir/cohort-map.tsv"
