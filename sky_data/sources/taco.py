"""TACO (BAAI/TACO): 25,443 algorithmic problems (train) judged on APPS-style `input_output` tests.

Hub: BAAI/TACO is a loading-script dataset, which `datasets>=4` no longer runs; its data is also published as
Parquet, `ALL/<split>-*.parquet`, which is read with `load_dataset("parquet", data_files=...)`. `path` (or a
local `hub_name`) may name a directory laid out the same way, or anything `open_records` reads (a
.jsonl/.json/.parquet file, a `save_to_disk` save, a directory `load_dataset` reads).

A record: `question`, `input_output` (JSON string) -> `tests` (parsed and checked as APPS'), `difficulty`
(EASY ... VERY_HARD, UNKNOWN_DIFFICULTY; `subsets` filters on it), `starter_code`, `source` (the judge site) and
`url` -> meta. TACO records carry no id: `source_id` is the record's 0-based index in its split.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sky_data.schema import Problem
from sky_data.sources.apps import read_tests
from sky_data.sources.rows import Records, Row, check_field, check_subsets, open_records

if TYPE_CHECKING:
    from sky_data.config import SourceCfg

HUB = "BAAI/TACO"
DIFFICULTIES = ("EASY", "MEDIUM", "MEDIUM_HARD", "HARD", "VERY_HARD", "UNKNOWN_DIFFICULTY")


def records(cfg: SourceCfg) -> Records:
    check_subsets("taco", cfg.subsets, DIFFICULTIES)
    root = cfg.path or cfg.hub_name or HUB
    if Path(root).is_dir() and (Path(root) / "ALL").is_dir():
        return _parquet_split(str(root), cfg.split)
    if cfg.path is None and not Path(root).is_dir():
        return _parquet_split(f"hf://datasets/{root}", cfg.split)
    return open_records(cfg.path, root, cfg.hub_config, cfg.split, "taco")


def _parquet_split(root: str, split: str) -> Records:
    import datasets

    pattern = f"{root}/ALL/{split}-*.parquet"
    ds = datasets.load_dataset("parquet", data_files=pattern, split="train")  # one file set: datasets calls it train
    return Records(pattern, "taco", (Row(i, f"{pattern} row {i}", rec) for i, rec in enumerate(ds)), len(ds))


def parse(row: Row, cfg: SourceCfg) -> Problem | None:
    rec = row.record
    level = check_field(rec, "difficulty")
    if cfg.subsets and level not in cfg.subsets:
        return None
    question = check_field(rec, "question")
    tests = read_tests(rec.get("input_output"))
    starter = check_field(rec, "starter_code", required=False, nonempty=False) or ""
    return Problem.make(domain="code", question=question, source="taco", tests=tests, starter_code=starter,
                        difficulty=level, source_id=str(row.index),
                        meta={"site": rec.get("source"), "url": rec.get("url")})
