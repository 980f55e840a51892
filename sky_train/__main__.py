"""Hydra entry point.

    python -m sky_train                                       # embedded default on CPU
    python -m sky_train optim.lr=2e-5 train.max_steps=10      # any key of conf/ (see config.py)
    python -m sky_train -m optim.lr=1e-5,2e-5                 # a sweep: runs/<run_name>_sweep/<overrides>/
    torchrun --nproc_per_node 8 -m sky_train experiment=sky_t1_32b model.name_or_path=... data.path=...
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import hydra
from omegaconf import DictConfig

from sky_train.config import to_config
from sky_train.train import train


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    result = train(to_config(cfg))
    return result.last_loss  # what a Hydra sweeper would optimise


def run_and_exit() -> None:
    """Run `main`, then leave without the interpreter's teardown.

    A finished run could still exit non-zero: C++ objects with threads of their own (gloo's, the process
    group's) were destroyed by interpreter-exit handlers in an arbitrary order, and about one run in six of
    four ranks aborted with "terminate called without an active exception" after writing everything. Here the
    process group is destroyed while Python still runs, the output is flushed, and the process exits with the
    job's status through `os._exit`, so the exit code says whether the run succeeded and nothing else.
    """
    from sky_train.dist import destroy_distributed

    code = 0
    try:
        main()
    except SystemExit as e:  # Hydra exits this way on errors it reports itself
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 (reported, then the status says it failed)
        traceback.print_exc()
        code = 1
    try:  # a checkpoint still being written in the background (a failed run's newest) is finished first
        from sky_train.checkpoint import wait_for_pending_saves

        wait_for_pending_saves()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        code = code or 1
    if code == 0:
        try:
            destroy_distributed()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run_and_exit()
