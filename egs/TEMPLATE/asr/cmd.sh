# How heavy commands run. Local machine (default): utils/run.py runs jobs here, at most nproc at once.
export train_cmd="utils/run.py"
export decode_cmd="utils/run.py"
export cuda_cmd="utils/run.py --gpu 1"
# On a Slurm cluster, swap in utils/slurm.py (options map to sbatch flags via local/slurm.conf):
# export train_cmd="utils/slurm.py --mem 8G --num-threads 4"
# export decode_cmd="utils/slurm.py --mem 4G"
# export cuda_cmd="utils/slurm.py --gpu 1 --mem 16G"
