#!/usr/bin/env bash
# Multi-node training under SLURM: one torchrun per node (srun), rendezvous (c10d) on the first node.
#   sbatch --nodes 2 --gpus-per-node 8 launch/slurm.sh experiment=sky_t1_32b model.name_or_path=... data.path=...
# Environment:
#   GPUS_PER_NODE   processes per node (default: $SLURM_GPUS_ON_NODE, else 8)
#   RDZV_PORT       rendezvous port on the first node (default 29500)
#   HYBRID=1        hybrid sharding: one replica per node (fsdp.replicate=<nodes>), parameters sharded within a
#                   node over NVLink, only the gradient all-reduce crosses nodes. Default: shard over all ranks.
#   RUN_ROOT        a folder every node sees (default: ./runs); the run folder is $RUN_ROOT/<run_name>.
# One shared run folder: every rank of every node gets the same run_dir (never a timestamp), rank 0 writes the
# config, metrics and export, and every rank writes its checkpoint shards there, so it must be on a shared
# filesystem (NFS, Lustre, ...). Submitting the same job again resumes from its newest checkpoint.
#SBATCH --job-name=sky-train
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --output=sky-train-%j.out
set -euo pipefail
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
RDZV_PORT=${RDZV_PORT:-29500}
RUN_ROOT=${RUN_ROOT:-runs}
NNODES=${SLURM_NNODES:?run this under sbatch (SLURM_NNODES is not set)}
# sed reads to the end: `head -n 1` can make scontrol die of SIGPIPE, which pipefail turns into a failure.
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)
EXTRA=()
if [ "${HYBRID:-0}" = "1" ]; then
  EXTRA+=("fsdp.replicate=$NNODES")
fi
# The run folder comes from run_name (set by the experiment or on the command line), under RUN_ROOT.
exec srun --kill-on-bad-exit=1 torchrun --nnodes "$NNODES" --nproc_per_node "$GPUS_PER_NODE" \
    --rdzv_id "${SLURM_JOB_ID}" --rdzv_backend c10d --rdzv_endpoint "$HEAD:$RDZV_PORT" \
    -m sky_train "hydra.run.dir=$RUN_ROOT/\${run_name}" "${EXTRA[@]}" "$@"
