"""MATH (EleutherAI/hendrycks_math): 7,500 competition problems (train) in seven subjects, levels 1-5.

Hub: one configuration per subject (`SUBJECTS`); `subsets` picks subjects (default all), `hub_config` names a
single one. A local directory laid out like the hub (its README's configs, or `<subject>/<split>-*.parquet`
folders without one) is read per subject too; a single file or a `save_to_disk` save holding every subject is
read once and filtered on its `type` column ("Counting & Probability" -> counting_and_probability).

A record: `problem`, `solution`, `level` ("Level 5" -> difficulty 5; "Level ?" -> None), `type`. The gold
answer is the last \\boxed{} of the solution. Problem.source = "math"; meta: subject, level, solution.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sky_data.schema import Problem
from sky_data.sources.rows import (
    Records,
    Row,
    boxed_answer,
    check_field,
    check_subsets,
    dataset_records,
    file_records,
    is_saved_dataset,
    open_records,
)

if TYPE_CHECKING:
    from sky_data.config import SourceCfg

HUB = "EleutherAI/hendrycks_math"
SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
            "prealgebra", "precalculus")


def records(cfg: SourceCfg) -> Records:
    check_subsets("math", cfg.subsets, SUBJECTS)
    root = cfg.path or cfg.hub_name or HUB
    if cfg.path is not None and (Path(root).is_file() or is_saved_dataset(root)):
        return open_records(cfg.path, root, None, cfg.split, "math")
    if cfg.path is not None and not Path(root).exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    subjects = list(cfg.subsets) or ([cfg.hub_config] if cfg.hub_config else list(SUBJECTS))
    parts = [_subject_records(root, s, cfg.split) for s in subjects]
    return Records(root, "math", itertools.chain.from_iterable(p.rows for p in parts),
                   sum(p.total or 0 for p in parts))


def _subject_records(root: str, subject: str, split: str) -> Records:
    folder = Path(root) / subject
    if Path(root).is_dir() and not (Path(root) / "README.md").is_file() and folder.is_dir():
        if (folder / f"{split}.jsonl").is_file():
            return file_records(folder / f"{split}.jsonl", "math")
        return dataset_records(str(folder), None, split, "math")
    return dataset_records(root, subject, split, "math")


def subject_of(kind: str | None) -> str | None:
    """The configuration name of a MATH `type`: "Counting & Probability" -> "counting_and_probability"."""
    if not isinstance(kind, str):
        return None
    return re.sub(r"\s+", "_", kind.strip().lower().replace("&", "and"))


def parse(row: Row, cfg: SourceCfg) -> Problem | None:
    rec = row.record
    subject = subject_of(rec.get("type"))
    if cfg.subsets and subject not in cfg.subsets:
        return None
    question = check_field(rec, "problem")
    solution = check_field(rec, "solution")
    level = check_field(rec, "level", (str, int), required=False)
    return Problem.make(domain="math", question=question, source="math", answer=boxed_answer(solution),
                        difficulty=level_number(level),
                        meta={"subject": subject, "level": level, "solution": solution})


def level_number(level: str | int | None) -> int | None:
    """ "Level 5" -> 5; 5 -> 5; "Level ?" or None -> None."""
    if isinstance(level, int):
        return level
    m = re.fullmatch(r"\s*(?:Level\s*)?(\d+)\s*", level or "")
    return int(m.group(1)) if m else None
