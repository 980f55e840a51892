"""NuminaMath-CoT (AI-MO/NuminaMath-CoT): 860k math problems with worked solutions; the recipe's math.

A record: `source` (amc_aime, math, olympiads, aops_forum, cn_k12, gsm8k, orca_math, synthetic_amc,
synthetic_math; `subsets` filters on it), `problem`, `solution`. The gold answer is the last \\boxed{} of the
solution (`boxed_answer`); a solution without one is rejected. Problem.source = "numina/<source>".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sky_data.schema import Problem
from sky_data.sources.rows import BadRecord, Records, Row, boxed_answer, check_field, check_subsets, open_records

if TYPE_CHECKING:
    from sky_data.config import SourceCfg

HUB = "AI-MO/NuminaMath-CoT"
SUBSETS = ("amc_aime", "math", "olympiads", "aops_forum", "cn_k12", "gsm8k", "orca_math", "synthetic_amc",
           "synthetic_math")


def records(cfg: SourceCfg) -> Records:
    check_subsets("numina", cfg.subsets, SUBSETS)
    return open_records(cfg.path, cfg.hub_name or HUB, cfg.hub_config, cfg.split, "numina")


def parse(row: Row, cfg: SourceCfg) -> Problem | None:
    rec = row.record
    subset = check_field(rec, "source")
    if cfg.subsets and subset not in cfg.subsets:
        return None
    source = f"numina/{subset}"
    try:
        question = check_field(rec, "problem")
        solution = check_field(rec, "solution")
        answer = boxed_answer(solution)
    except BadRecord as e:
        raise BadRecord(str(e), source) from None
    return Problem.make(domain="math", question=question, source=source, answer=answer,
                        meta={"solution": solution})
