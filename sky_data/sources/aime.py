"""AIME (AI-MO/aimo-validation-aime): 90 AIME problems of 2022-2024 with integer answers.

A record: `id` -> source_id, `problem`, `answer` (kept as written: "023" stays "023"; a number becomes its
text), `solution`, `url` -> meta. Problem.source = "aime". It has no subsets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sky_data.schema import Problem
from sky_data.sources.rows import Records, Row, answer_text, check_field, open_records

if TYPE_CHECKING:
    from sky_data.config import SourceCfg

HUB = "AI-MO/aimo-validation-aime"


def records(cfg: SourceCfg) -> Records:
    if cfg.subsets:
        raise ValueError(f"source aime has no subsets, got {list(cfg.subsets)}")
    return open_records(cfg.path, cfg.hub_name or HUB, cfg.hub_config, cfg.split, "aime")


def parse(row: Row, cfg: SourceCfg) -> Problem | None:
    rec = row.record
    question = check_field(rec, "problem")
    answer = answer_text(check_field(rec, "answer", (str, int, float), nonempty=False))
    pid = check_field(rec, "id", (int, str), required=False)
    return Problem.make(domain="math", question=question, source="aime", answer=answer,
                        source_id=None if pid is None else str(pid),
                        meta={"url": rec.get("url"), "solution": rec.get("solution")})
