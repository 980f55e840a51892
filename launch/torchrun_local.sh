#!/usr/bin/env bash
# Train on the GPUs of this machine.
#   NPROC   processes (GPUs) to use (default: all visible GPUs, else 1)
#   extra arguments are Hydra overrides, e.g.:
#   launch/torchrun_local.sh experiment=sky_t1_32b model.name_or_path=/models/Qwen2.5-32B-Instruct data.path=data.json
set -euo pipefail
NPROC=${NPROC:-$(python -c "import torch; print(max(1, torch.cuda.device_count()))")}
exec torchrun --standalone --nproc_per_node "$NPROC" -m sky_train "$@"
