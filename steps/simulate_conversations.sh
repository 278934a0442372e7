#!/usr/bin/env bash
# Simulate multi-party conversations from single-speaker manifests (serac.bin.simulate_conversations) as --nj jobs
# through $cmd, then merge the shards; skipped (without starting Python) when every split's output exists.
#
# Usage: steps/simulate_conversations.sh [options] <source-manifest-dir> <source-prefix> <splits> <out-dir>
#   steps/simulate_conversations.sh --cmd "$train_cmd" --nj 2 --opts "--seed 1 --turns 3,6" \
#     data/source synth train:1000,dev:100,test:1000 data/manifests
#   # -> data/manifests/conv_cuts_{train,dev,test}.jsonl.gz (MixedCuts referencing the source audio)
# Any option of serac.bin.simulate_conversations but the positional ones and --nj/--job/--merge goes in --opts
# (--seed, --speakers, --turns, --overlap-ratios, --pause, --sources).
set -euo pipefail
echo "$0 $*"

cmd=utils/run.py
nj=1
out_prefix=conv
opts=""
help_message="Usage: $0 [options] <source-manifest-dir> <source-prefix> <splits> <out-dir>
e.g.: $0 --nj 2 --opts \"--seed 1\" data/source synth train:1000,dev:100,test:1000 data/manifests
Options:
  --cmd <cmd>           # how to run the jobs (default: $cmd)
  --nj <n>              # simulation jobs (any number gives the same conversations)
  --out-prefix <name>   # outputs <out-dir>/<out-prefix>_cuts_<split>.jsonl.gz (default: $out_prefix)
  --opts <string>       # more serac.bin.simulate_conversations options"

. ./path.sh
. utils/parse_options.sh
if [ $# -ne 4 ]; then echo "$help_message" >&2; exit 1; fi
manifest_dir=$1; prefix=$2; splits=$3; out_dir=$4

names=$(echo "$splits" | sed 's/:[0-9]*//g')   # train,dev,test
done_all=true
for split in ${names//,/ }; do [ -f $out_dir/${out_prefix}_cuts_$split.jsonl.gz ] || done_all=false; done
if $done_all; then
  echo "$0: $out_dir/${out_prefix}_cuts_{$names}.jsonl.gz exist; skipping"
  exit 0
fi
all_opts="--manifest-dir $manifest_dir --prefix $prefix --splits $splits --out-dir $out_dir --out-prefix $out_prefix
  --nj $nj $opts"
$cmd JOB=1:$nj $out_dir/log/simulate.JOB.log python -m serac.bin.simulate_conversations $all_opts --job JOB
python -m serac.bin.simulate_conversations $all_opts --merge
echo "$0: done"
