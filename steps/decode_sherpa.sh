#!/usr/bin/env bash
# Decode a cuts manifest with an exported model (steps/export.sh) in sherpa-onnx, greedy search from the audio,
# offline or streaming as the model was exported. Writes <exp-dir>/decode/<set-name>/ recogs/errs/wer-summary/stats
# with suffix sherpa-greedy_search-epoch-<e>-avg-<n> or sherpa-streaming_greedy_search-chunk-<ms>ms-epoch-<e>-avg-<n>.
set -euo pipefail
echo "$0 $*"

cmd=utils/run.py
epoch=
avg=1
num_threads=1
help_message="Usage: $0 [options] <model-dir> <exp-dir> <cuts.jsonl.gz> <set-name>
e.g.: $0 --epoch 60 --avg 10 exp/lstm/sherpa-onnx-epoch-60-avg-10/offline exp/lstm data/fbank/yesno_cuts_test.jsonl.gz test
Options:
  --cmd <cmd>              # \$decode_cmd from cmd.sh
  --epoch <e> --avg <n>    # the checkpoints the model was exported from (they name the results)
  --num-threads <n>        # sherpa-onnx threads (default: $num_threads)"

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 4 ]; then echo "$help_message" >&2; exit 1; fi
model_dir=$1; exp_dir=$2; cuts=$3; set_name=$4
[ -z "$epoch" ] && { echo "$0: --epoch is required" >&2; exit 1; }
[ -f "$cuts" ] || { echo "$0: no such file $cuts" >&2; exit 1; }
[ -f "$model_dir/encoder.onnx" ] || { echo "$0: no $model_dir/encoder.onnx (run steps/export.sh)" >&2; exit 1; }
out_dir=$exp_dir/decode/$set_name
mkdir -p "$out_dir/log"
name=$(basename "$model_dir")
$cmd --num-threads "$num_threads" "$out_dir/log/decode-sherpa-$name-epoch-$epoch-avg-$avg.log" \
  python -m serac.bin.decode_sherpa --model-dir "$model_dir" --epoch "$epoch" --avg "$avg" --cuts "$cuts" \
  --set-name "$set_name" --out-dir "$out_dir" --num-threads "$num_threads"
grep -h "WER" "$out_dir/log/decode-sherpa-$name-epoch-$epoch-avg-$avg.log" | tail -n 1 || true
echo "$0: done"
