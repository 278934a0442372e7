# Stage bookkeeping for a recipe's run.sh; source it after utils/parse_options.sh:
#
#   . utils/stage_utils.sh exp/timing.tsv
#   if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
#     echo "Stage 1: ..."
#     ...
#     stage_done 1 name
#   fi
#
# stage_done N NAME appends "N<TAB>NAME<TAB>seconds<TAB>finished" to the timing TSV (created with a header on
# first use) and prints the stage's wall time, counted from the previous stage_done (or from sourcing this file).
# A command that stops the recipe under `set -e` (a failing pipeline under pipefail too) is named on stderr with
# its line, instead of the recipe ending without a word.
stage_timing=${1:?usage: . utils/stage_utils.sh <timing.tsv>}
mkdir -p "$(dirname "$stage_timing")"
[ -f "$stage_timing" ] || printf "stage\tname\tseconds\tfinished\n" > "$stage_timing"
stage_t0=$(date +%s)
trap 'echo "$0: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

stage_done() {  # stage_done N NAME: record the stage's wall time
  local now; now=$(date +%s)
  printf "%s\t%s\t%s\t%s\n" "$1" "$2" "$((now - stage_t0))" "$(date '+%F %T')" >> "$stage_timing"
  echo "stage $1 ($2): $((now - stage_t0)) s"
  stage_t0=$now
}
