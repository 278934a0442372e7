#!/usr/bin/env bash
# Export an averaged checkpoint to sherpa-onnx: <out-dir>/{encoder,decoder,joiner}.onnx and tokens.txt, checked
# against the PyTorch model with onnxruntime. Offline for every encoder; --mode streaming writes a sherpa-onnx
# online model (type 'lstm' or 'conformer', see docs/export.md) taking --chunk-frames feature frames per call.
set -euo pipefail
echo "$0 $*"

cmd=utils/run.py
epoch=
avg=1
mode=offline
model_type=auto
chunk_frames=16
sample_rate=16000
help_message="Usage: $0 [options] <exp-dir> <lang-dir> <out-dir>
e.g.: $0 --epoch 60 --avg 10 --sample-rate 8000 exp/lstm data/lang_word exp/lstm/sherpa-onnx-epoch-60-avg-10/offline
Options:
  --cmd <cmd>              # \$train_cmd from cmd.sh
  --epoch <e> --avg <n>    # average epochs e-n+1..e (default avg: $avg)
  --mode <offline|streaming>  # (default: $mode)
  --model-type <auto|lstm|conformer>  # sherpa-onnx online model type (default: $model_type)
  --chunk-frames <n>       # streaming: feature frames per encoder call (default: $chunk_frames)
  --sample-rate <hz>       # of the training audio; sherpa-onnx resamples other input to it (default: $sample_rate)
An existing <out-dir>/export.json (a finished export) is not redone."

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
exp_dir=$1; lang_dir=$2; out_dir=$3
[ -z "$epoch" ] && { echo "$0: --epoch is required" >&2; exit 1; }
[ -f "$lang_dir/tokens.txt" ] || { echo "$0: no $lang_dir/tokens.txt" >&2; exit 1; }
if [ -f "$out_dir/export.json" ]; then
  echo "$0: $out_dir/export.json exists, skipping"; exit 0
fi
mkdir -p "$out_dir/log"
$cmd "$out_dir/log/export.log" python -m serac.bin.export --exp-dir "$exp_dir" --lang-dir "$lang_dir" \
  --epoch "$epoch" --avg "$avg" --out-dir "$out_dir" --mode "$mode" --model-type "$model_type" \
  --chunk-frames "$chunk_frames" --sample-rate "$sample_rate"
echo "$0: wrote $out_dir: $(cd "$out_dir" && ls encoder.onnx decoder.onnx joiner.onnx tokens.txt | tr '\n' ' ')"
echo "$0: done"
