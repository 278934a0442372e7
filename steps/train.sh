#!/usr/bin/env bash
# Train a transducer with serac.bin.train through $cmd: one process, several local processes (torchrun),
# or several nodes of a Slurm job (srun starts torchrun on each node, c10d rendezvous on the first).
#
# Usage: steps/train.sh [options] <lang-dir> <train-cuts> <valid-cuts> <exp-dir>
#   steps/train.sh --cmd "$train_cmd" --train-config conf/lstm.yaml --num-epochs 20 \
#     data/lang_word data/fbank/yesno_cuts_train.jsonl.gz data/fbank/yesno_cuts_test.jsonl.gz exp/lstm
#
# The validation set (<valid-cuts>) is only reported: its loss is printed after every epoch (the "valid loss" of
# the epoch line in <exp-dir>/log/train.log), stored in epoch-N.pt and shown in tensorboard. It never chooses a
# checkpoint, stops training early or tunes anything: decoding takes the checkpoints named by --epoch/--avg.
# Cuts the loss cannot score (empty transcript, more tokens than encoder frames) are skipped in both sets and
# listed in <exp-dir>/log/skipped-cuts-{train,valid}.txt.
# Output: <exp-dir>/epoch-N.pt (atomic; with the random state, so a killed run resumes exactly), config.yaml,
# log/, tensorboard/. A second training on the same <exp-dir> while one is alive is refused (<exp-dir>/.lock).
set -euo pipefail
echo "$0 $*"

cmd=utils/run.py
train_config=
num_epochs=
num_nodes=1
gpus_per_node=0       # 0: CPU
nproc_per_node=1      # processes per node on CPU (gloo); with GPUs one process per GPU
num_threads=1
train_opts=""         # extra options for serac.bin.train, e.g. "--set optim.lr=1e-3"
rdzv_port=29500
help_message="Usage: $0 [options] <lang-dir> <train-cuts> <valid-cuts> <exp-dir>
e.g.: $0 --train-config conf/lstm.yaml data/lang_word data/fbank/yesno_cuts_train.jsonl.gz data/fbank/yesno_cuts_test.jsonl.gz exp/lstm
Options:
  --cmd <cmd>                # \$train_cmd or \$cuda_cmd from cmd.sh (default: $cmd)
  --train-config <yaml>      # model/training config (YAML)
  --num-epochs <n>           # overrides train.num_epochs
  --num-nodes <n>            # >1: multi-node DDP (needs utils/slurm.py as --cmd)
  --gpus-per-node <n>        # GPUs per node; one training process per GPU
  --nproc-per-node <n>       # CPU processes per node when --gpus-per-node is 0 (gloo)
  --num-threads <n>          # torch threads per process
  --train-opts <string>      # passed through to serac.bin.train
<valid-cuts> is reported only (valid loss after each epoch), never used to pick a checkpoint.
Re-running resumes exactly after the last epoch-N.pt in <exp-dir>; a finished run is skipped."

. ./path.sh
. utils/parse_options.sh

if [ $# -ne 4 ]; then echo "$help_message" >&2; exit 1; fi
lang_dir=$1; train_cuts=$2; valid_cuts=$3; exp_dir=$4
mkdir -p "$exp_dir/log"

args="--exp-dir $exp_dir --lang-dir $lang_dir --train-cuts $train_cuts --valid-cuts $valid_cuts"
[ -n "$train_config" ] && args="$args --config $train_config"
[ -n "$num_epochs" ] && args="$args --num-epochs $num_epochs"
args="$args --set train.num_threads=$num_threads $train_opts"

nproc=$nproc_per_node
gpu_opt=""
if [ "$gpus_per_node" -gt 0 ]; then nproc=$gpus_per_node; gpu_opt="--gpu $gpus_per_node"; fi

if [ "$num_nodes" -gt 1 ]; then
  # One Slurm job with num_nodes nodes; srun starts one torchrun per node, rendezvous on the first node.
  $cmd --num-nodes "$num_nodes" $gpu_opt --num-threads $((nproc * num_threads)) "$exp_dir/log/train.log" \
    utils/srun_torchrun.sh --nproc-per-node "$nproc" --rdzv-port "$rdzv_port" -- -m serac.bin.train $args
elif [ "$nproc" -gt 1 ]; then
  $cmd $gpu_opt --num-threads $((nproc * num_threads)) "$exp_dir/log/train.log" \
    torchrun --standalone --nnodes 1 --nproc-per-node "$nproc" -m serac.bin.train $args
else
  $cmd $gpu_opt --num-threads "$num_threads" "$exp_dir/log/train.log" python -m serac.bin.train $args
fi
# the trainer's log has the details; the console gets one line per set with skipped cuts
for list in "$exp_dir"/log/skipped-cuts-*.txt; do
  [ -f "$list" ] && echo "$0: $(wc -l < "$list") cuts skipped (transcript unusable), listed in $list"
done
echo "$0: done"
