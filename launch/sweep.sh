#!/usr/bin/env bash
# A Hydra sweep, run point after point (each point initialises and tears down its own process group).
#   NPROC   processes per point (default 1: plain python; >1: torchrun)
#   launch/sweep.sh optim.lr=1e-5,2e-5 train.epochs=2,3
set -euo pipefail
NPROC=${NPROC:-1}
if [ "$NPROC" -gt 1 ]; then
  exec torchrun --standalone --nproc_per_node "$NPROC" -m sky_train -m "$@"
fi
exec python -m sky_train -m "$@"
