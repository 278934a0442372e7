#!/usr/bin/env bash
# How robust is the yesno recipe's training? Runs egs/yesno/asr/run.sh once per training seed and thread count
# (one after another, or --jobs at once; each in its own exp dir, the data stages shared) and prints the test
# WER table.
# The bar the test (tests/test_recipe_yesno.py) holds for one seed: greedy and beam WER <= 2%.
#
#   bench/yesno_seeds.sh --corpus-dir /path/to/waves_yesno                  # seeds 1 2 3 x threads 1 2
#   bench/yesno_seeds.sh --corpus-dir DIR --seeds "4 5" --threads 1        # more seeds
set -euo pipefail
echo "$0 $*"

corpus_dir=
seeds="1 2 3"
threads="1 2"
exp_prefix=exp/seeds/lstm   # exp dirs <exp-prefix>-seed<S>-threads<T>, inside egs/yesno/asr
jobs=1                      # runs at once (1: one after another, the run times are then comparable)
help_message="Usage: $0 --corpus-dir <waves_yesno> [--seeds \"1 2 3\"] [--threads \"1 2\"] [--jobs N] [--exp-prefix DIR]"

cd "$(dirname "$(readlink -f "$0")")/../egs/yesno/asr"
. ./path.sh
. utils/parse_options.sh
if [ $# -ne 0 ] || [ -z "$corpus_dir" ]; then echo "$help_message" >&2; exit 1; fi

one_run() {  # seed threads exp-dir: the recipe, then its test WERs into <exp-dir>.wer
  local start=$(date +%s)
  ./run.sh --corpus-dir "$corpus_dir" --seed "$1" --num-threads "$2" --exp-dir "$3" > "$3.log" 2>&1 \
    || { echo "$0: run failed, see egs/yesno/asr/$3.log" >&2; return 1; }
  echo "$(tail -n 1 $3/decode/test/wer-summary-test-greedy_search-*.txt | cut -f 2)" \
    "$(tail -n 1 $3/decode/test/wer-summary-test-modified_beam_search-*.txt | cut -f 2)" \
    "$(( $(date +%s) - start ))" > "$3.wer"
  echo "seed $1, $2 threads: greedy, beam WER %, seconds: $(cat "$3.wer")"
}

mkdir -p "$(dirname "$exp_prefix")"
# the data stages once, before runs that share them
./run.sh --corpus-dir "$corpus_dir" --stop-stage 3 > "$exp_prefix-data.log" 2>&1 \
  || { echo "$0: data stages failed, see egs/yesno/asr/$exp_prefix-data.log" >&2; exit 1; }
for seed in $seeds; do
  for t in $threads; do
    exp=$exp_prefix-seed$seed-threads$t
    rm -f "$exp.wer"
    one_run "$seed" "$t" "$exp" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  done
done
wait

echo
echo "| seed | threads | greedy WER % | beam WER % | run time s |"
echo "|---|---|---|---|---|"
bad=0; runs=0
for seed in $seeds; do
  for t in $threads; do
    exp=$exp_prefix-seed$seed-threads$t
    runs=$((runs + 1))
    if [ ! -f "$exp.wer" ]; then echo "| $seed | $t | failed | failed | - |"; bad=$((bad + 1)); continue; fi
    read -r greedy beam secs < "$exp.wer"
    awk -v g="$greedy" -v b="$beam" 'BEGIN { exit !(g > 2 || b > 2) }' && bad=$((bad + 1))
    echo "| $seed | $t | $greedy | $beam | $secs |"
  done
done
echo
echo "$bad of $runs runs above 2% WER (or failed)"
