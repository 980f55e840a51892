"""Hydra entry point of the data pipeline (see sky_data/pipeline.py for the stages and the files they write).

    python -m sky_data source=local source.path=problems.jsonl out_dir=runs/data/mine \
        teacher.model=QwQ teacher.base_url=http://127.0.0.1:8000/v1 teacher.n=4 teacher.concurrency=64
    python -m sky_data source=local source.path=p.jsonl teacher.backend=vllm teacher.model=DIR rewrite.enabled=false
    python -m sky_data source=sky_t1 dedup.benchmarks_dir=../shared/data ...       # the recipe's mix
    OPENAI_API_KEY=... python -m sky_data ... rewrite.model=gpt-4o-mini           # keys only from the environment

Run the same command again after any stop: answered requests come from out_dir/cache, nothing is sent twice.
Every key: sky_data/config.py (conf/sky_data/sky_data.yaml holds the defaults).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sky_data.config import to_config
from sky_data.pipeline import run_pipeline


@hydra.main(config_path="../conf/sky_data", config_name="sky_data", version_base="1.3")
def main(cfg: DictConfig) -> int:
    report = run_pipeline(to_config(cfg))
    return report["sft_records"]


if __name__ == "__main__":
    main()
