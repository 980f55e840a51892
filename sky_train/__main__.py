"""Hydra entry point.

    python -m sky_train                                       # embedded default on CPU
    python -m sky_train optim.lr=2e-5 train.max_steps=10      # any key of conf/ (see config.py)
    python -m sky_train -m optim.lr=1e-5,2e-5                 # a sweep: runs/<run_name>_sweep/<overrides>/
    torchrun --nproc_per_node 8 -m sky_train experiment=sky_t1_32b model.name_or_path=... data.path=...
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sky_train.config import to_config
from sky_train.train import train


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    result = train(to_config(cfg))
    return result.last_loss  # what a Hydra sweeper would optimise


if __name__ == "__main__":
    main()
