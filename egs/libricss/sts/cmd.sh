# How heavy commands run. Local machine (default): utils/run.py runs jobs here, at most nproc at once.
export train_cmd="utils/run.py"
export decode_cmd="utils/run.py"
export cuda_cmd="utils/run.py"   # steps/train.sh adds --gpu <gpus-per-node> itself
# On a Slurm cluster, swap in utils/slurm.py (options map to sbatch flags via local/slurm.conf):
# export train_cmd="utils/slurm.py --mem 16G --num-threads 8"     # manifests, conversations, fbank, BPE
# export decode_cmd="utils/slurm.py --mem 8G"                     # CPU decoding, one job per shard (--decode-nj)
# export cuda_cmd="utils/slurm.py --mem 64G --time 3-00:00:00"    # training; --gpu N comes from --gpus-per-node
