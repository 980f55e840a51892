#!/usr/bin/env bash
# Multi-node training under SLURM: one torchrun per node, rendezvous on the first node.
#   sbatch --nodes 2 --gpus-per-node 8 launch/slurm.sh experiment=sky_t1_32b model.name_or_path=... data.path=...
#   GPUS_PER_NODE   processes per node (default 8)
#   RDZV_PORT       rendezvous port on the first node (default 29500)
# run_dir must be on a filesystem every node sees; it is derived from run_name, never from a timestamp.
#SBATCH --job-name=sky-train
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
set -euo pipefail
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
RDZV_PORT=${RDZV_PORT:-29500}
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node "$GPUS_PER_NODE" \
    --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$HEAD:$RDZV_PORT" \
    -m sky_train "$@"
