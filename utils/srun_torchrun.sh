#!/usr/bin/env bash
# Inside a multi-node Slurm job: start one torchrun per node with srun, rendezvous (c10d) on the first node.
# steps/train.sh --num-nodes N calls this through utils/slurm.py; it can also be used in a hand-written sbatch script.
#
#   utils/srun_torchrun.sh --nproc-per-node 4 [--rdzv-port 29500] -- -m serac.bin.train --exp-dir ... [args]
set -euo pipefail
echo "$0 $*"

nproc_per_node=1
rdzv_port=29500
while [ $# -gt 0 ]; do
  case $1 in
    --nproc-per-node) nproc_per_node=$2; shift 2 ;;
    --rdzv-port) rdzv_port=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
  esac
done
if [ -z "${SLURM_JOB_NODELIST:-}" ]; then
  echo "$0: not inside a Slurm job (SLURM_JOB_NODELIST unset); use torchrun directly" >&2
  exit 1
fi
num_nodes=${SLURM_JOB_NUM_NODES:-1}
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
echo "$0: $num_nodes node(s) x $nproc_per_node process(es), rendezvous at $head_node:$rdzv_port"
exec srun --nodes "$num_nodes" --ntasks "$num_nodes" --ntasks-per-node 1 \
  torchrun --nnodes "$num_nodes" --nproc-per-node "$nproc_per_node" \
    --rdzv-id "${SLURM_JOB_ID}" --rdzv-backend c10d --rdzv-endpoint "$head_node:$rdzv_port" "$@"
