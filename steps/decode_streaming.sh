#!/usr/bin/env bash
# Streaming decode of a cuts manifest: each utterance goes through the encoder chunk by chunk (state carried),
# greedy search extends the hypothesis after every chunk. Writes the recogs/errs/wer-summary files of
# steps/decode.sh (so steps/score_cohorts.sh works on them) plus streaming-summary-<set>-<suffix>.txt with the
# real-time factor, compute ms per chunk (mean/p50/p90/p99) and the algorithmic latency.
# Optionally split into --nj shards run as a job array and merged.
set -euo pipefail
echo "$0 $*"

cmd=utils/run.py
nj=1
epoch=
avg=1
chunk_ms=160
num_threads=1
conversations=false  # true: the cuts are conversations; a single-talker model decodes each as one stream
help_message="Usage: $0 [options] <exp-dir> <lang-dir> <cuts.jsonl.gz> <set-name>
e.g.: $0 --epoch 30 --avg 5 --chunk-ms 160 --nj 2 exp/lstm data/lang_bpe_256 data/fbank/synth_cuts_test.jsonl.gz test
Options:
  --cmd <cmd>          # \$decode_cmd from cmd.sh
  --nj <n>             # number of shards / jobs (default: $nj)
  --epoch <e> --avg <n># average epochs e-n+1..e (default avg: $avg)
  --chunk-ms <ms>      # chunk duration; a multiple of the encoder's chunk_multiple frames (default: $chunk_ms)
  --num-threads <n>    # torch threads per job; latency and RTF are measured with this many (default: $num_threads)
  --conversations <true|false>  # conversation cuts (one supervision per turn): a single-talker model decodes
                       # each whole as one stream and writes hyps-*.jsonl for serac.bin.score_multitalker
                       # (a multi-channel STS model always does; default: $conversations)
Results go to <exp-dir>/decode/<set-name>/ with suffix streaming_greedy_search-chunk-<ms>ms-epoch-<e>-avg-<n>;
an existing wer-summary for the same setting is not redone."

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 4 ]; then echo "$help_message" >&2; exit 1; fi
exp_dir=$1; lang_dir=$2; cuts=$3; set_name=$4
case $conversations in true|false) ;; *) echo "$0: --conversations true|false, got '$conversations'" >&2; exit 1;; esac
[ -z "$epoch" ] && { echo "$0: --epoch is required" >&2; exit 1; }
[ -f "$cuts" ] || { echo "$0: no such file $cuts" >&2; exit 1; }
suffix=$(python -m serac.bin.decode_streaming --print-suffix --chunk-ms "$chunk_ms" --epoch $epoch --avg $avg)
out_dir=$exp_dir/decode/$set_name
recogs=$out_dir/recogs-$set_name-$suffix.txt
if [ -f "$out_dir/wer-summary-$set_name-$suffix.txt" ]; then
  echo "$0: $out_dir/wer-summary-$set_name-$suffix.txt exists (the results do not depend on --nj), skipping"
  echo "$0: recogs: $recogs"; exit 0
fi
mkdir -p "$out_dir/log"
# shards of an earlier, interrupted run (perhaps with another --nj) must not be merged into this one
rm -f "$out_dir"/recogs-$set_name-$suffix.shard-*.txt "$out_dir"/stats-$set_name-$suffix.shard-*.json
opts="--exp-dir $exp_dir --lang-dir $lang_dir --epoch $epoch --avg $avg --cuts $cuts --set-name $set_name \
  --chunk-ms $chunk_ms --num-threads $num_threads"
$conversations && opts="$opts --conversations"
if [ "$nj" -gt 1 ]; then
  $cmd --num-threads "$num_threads" JOB=1:$nj "$out_dir/log/decode-$suffix.JOB.log" \
    python -m serac.bin.decode_streaming $opts --num-shards "$nj" --shard JOB
  python -m serac.bin.merge_decode --out-dir "$out_dir" --set-name "$set_name" --suffix "$suffix" --num-shards "$nj"
else
  $cmd --num-threads "$num_threads" "$out_dir/log/decode-$suffix.log" python -m serac.bin.decode_streaming $opts
fi
echo "$0: $set_name $suffix: WER $(tail -n 1 "$out_dir/wer-summary-$set_name-$suffix.txt" | cut -f 2)%"
sed 's/^/  /' "$out_dir/streaming-summary-$set_name-$suffix.txt"
echo "$0: recogs: $recogs"
