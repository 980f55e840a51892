"""STILL-2 (RUC-AIBOX/long_form_thought_data_5k): 4,922 long-thought traces in math, code, science, puzzles.

Sky-T1 took its puzzle, physics, chemistry and biology records (`subsets` filters `domain`; empty: all). A
record: `question`, `combined_text` (the thought, then the solution after "<|begin_of_solution|>"), `domain`.
The gold answer is the last \\boxed{} of the solution part (of the whole text when it has no marker); a record
without one is rejected, and so are code records (they carry no tests). math -> domain "math", every other
domain -> "science". Problem.source = "still2"; meta: its own domain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sky_data.schema import Problem
from sky_data.sources.rows import BadRecord, Records, Row, boxed_answer, check_field, open_records
from sky_data.verify.math import solution_regions

if TYPE_CHECKING:
    from sky_data.config import SourceCfg

HUB = "RUC-AIBOX/long_form_thought_data_5k"


def records(cfg: SourceCfg) -> Records:
    return open_records(cfg.path, cfg.hub_name or HUB, cfg.hub_config, cfg.split, "still2")


def parse(row: Row, cfg: SourceCfg) -> Problem | None:
    rec = row.record
    kind = check_field(rec, "domain")
    if cfg.subsets and kind not in cfg.subsets:
        return None
    if kind == "code":
        raise BadRecord("a code record carries no tests")
    question = check_field(rec, "question")
    text = check_field(rec, "combined_text")
    answer = boxed_answer(solution_regions(text)[0], "the solution part of combined_text")
    return Problem.make(domain="math" if kind == "math" else "science", question=question, source="still2",
                        answer=answer, meta={"domain": kind})
