#!/usr/bin/env bash
# Decode a cuts manifest with a trained transducer, optionally split into --nj shards run as a job array,
# and merge the shards into the same recogs/errs/wer-summary files a single job writes.
set -euo pipefail
echo "$0 $*"

cmd=utils/run.py
nj=1
epoch=
avg=1
method=greedy_search
beam=4
lm=                  # token n-gram ARPA for shallow fusion (modified_beam_search), e.g. data/lang_bpe_64/lm-6gram.arpa
lm_scale=0.3
blank_penalty=0      # subtracted from the blank logit in modified_beam_search (counters an LM's deletions)
num_threads=1
max_duration=300
conversations=false  # true: the cuts are conversations; a single-talker model decodes each as one stream
help_message="Usage: $0 [options] <exp-dir> <lang-dir> <cuts.jsonl.gz> <set-name>
e.g.: $0 --epoch 20 --avg 5 --method modified_beam_search --nj 3 exp/lstm data/lang_word data/fbank/yesno_cuts_test.jsonl.gz test
Options:
  --cmd <cmd>          # \$decode_cmd from cmd.sh
  --nj <n>             # number of shards / jobs (default: $nj)
  --epoch <e> --avg <n># average epochs e-n+1..e (default avg: $avg)
  --method <greedy_search|modified_beam_search>
  --beam <n>           # for modified_beam_search (default: $beam)
  --lm <arpa> --lm-scale <s>  # shallow fusion with a token n-gram LM (modified_beam_search; serac.bin.train_lm)
  --blank-penalty <p>  # modified_beam_search: subtract p from the blank logit (default: $blank_penalty)
  --num-threads <n>    # torch threads per job (default: $num_threads)
  --max-duration <s>   # seconds of audio per batch (default: $max_duration)
  --conversations <true|false>  # conversation cuts (one supervision per turn): a single-talker model decodes
                       # each whole as one stream and writes hyps-*.jsonl for serac.bin.score_multitalker
                       # (a multi-channel STS model always does; default: $conversations)
Results go to <exp-dir>/decode/<set-name>/ (the last line printed names the recogs file). An existing wer-summary
for the same setting is not redone, whatever --nj: shards hold every nj-th cut and the merged files are sorted by
cut id, so they do not depend on --nj (the stats JSON records num_shards)."

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 4 ]; then echo "$help_message" >&2; exit 1; fi
exp_dir=$1; lang_dir=$2; cuts=$3; set_name=$4
case $conversations in true|false) ;; *) echo "$0: --conversations true|false, got '$conversations'" >&2; exit 1;; esac
[ -z "$epoch" ] && { echo "$0: --epoch is required" >&2; exit 1; }
search_opts="--method $method --epoch $epoch --avg $avg --beam $beam"
[ -n "$lm" ] && search_opts="$search_opts --lm $lm --lm-scale $lm_scale"
[ "$(printf '%g' "$blank_penalty")" != 0 ] && search_opts="$search_opts --blank-penalty $blank_penalty"
suffix=$(python -m serac.bin.decode --print-suffix $search_opts)
out_dir=$exp_dir/decode/$set_name
recogs=$out_dir/recogs-$set_name-$suffix.txt
if [ -f "$out_dir/wer-summary-$set_name-$suffix.txt" ]; then
  echo "$0: $out_dir/wer-summary-$set_name-$suffix.txt exists (the results do not depend on --nj), skipping"
  echo "$0: recogs: $recogs"; exit 0
fi
mkdir -p "$out_dir/log"
# shards of an earlier, interrupted run (perhaps with another --nj) must not be merged into this one
rm -f "$out_dir"/recogs-$set_name-$suffix.shard-*.txt "$out_dir"/stats-$set_name-$suffix.shard-*.json
opts="--exp-dir $exp_dir --lang-dir $lang_dir --cuts $cuts --set-name $set_name $search_opts \
  --num-threads $num_threads --max-duration $max_duration"
$conversations && opts="$opts --conversations"
if [ "$nj" -gt 1 ]; then
  $cmd --num-threads "$num_threads" JOB=1:$nj "$out_dir/log/decode-$suffix.JOB.log" \
    python -m serac.bin.decode $opts --num-shards "$nj" --shard JOB
  python -m serac.bin.merge_decode --out-dir "$out_dir" --set-name "$set_name" --suffix "$suffix" --num-shards "$nj"
else
  $cmd --num-threads "$num_threads" "$out_dir/log/decode-$suffix.log" python -m serac.bin.decode $opts
fi
echo "$0: $set_name $suffix: WER $(tail -n 1 "$out_dir/wer-summary-$set_name-$suffix.txt" | cut -f 2)%"
echo "$0: recogs: $recogs"
