"""Problems of your own: a `.jsonl` (one object per line), `.json` (a list of objects) or `.parquet` file.

A record holds `problem` (or `question`), and either `answer` (math/science: a number becomes its text,
27.0 -> "27"; a string stays as written, "023") or `input_output` (code: APPS/TACO tests
`{"inputs": [...], "outputs": [...], "fn_name"?}`, an object or a JSON string). Optional: `id` -> source_id,
`domain` (default: `cfg.domain`, else "code" when `input_output` is given, else "math"), `starter_code`,
`difficulty`, `solution` (kept in meta). The domain decides which of answer / input_output is read.
Problem.source = "local:<file name>".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sky_data.schema import DOMAINS, Problem
from sky_data.sources.apps import read_tests
from sky_data.sources.rows import BadRecord, Records, Row, answer_text, check_field, file_records

if TYPE_CHECKING:
    from sky_data.config import SourceCfg


def records(cfg: SourceCfg) -> Records:
    if not cfg.path:
        raise ValueError("source local needs path=FILE (.jsonl, .json or .parquet)")
    if cfg.subsets:
        raise ValueError(f"source local has no subsets, got {list(cfg.subsets)}")
    if cfg.domain is not None and cfg.domain not in DOMAINS:
        raise ValueError(f"source local: domain must be one of {', '.join(DOMAINS)}, got {cfg.domain!r}")
    return file_records(cfg.path, f"local:{Path(cfg.path).name}")


def parse(row: Row, cfg: SourceCfg) -> Problem | None:
    rec = row.record
    if rec.get("problem") is None and rec.get("question") is None:
        raise BadRecord("field 'problem' (or 'question') is missing")
    question = check_field(rec, "problem" if rec.get("problem") is not None else "question")
    domain = check_field(rec, "domain", required=False) or cfg.domain
    if domain is None:
        domain = "code" if rec.get("input_output") is not None else "math"
    if domain not in DOMAINS:
        raise BadRecord(f"field 'domain' must be one of {', '.join(DOMAINS)}, got {domain!r}")
    pid = check_field(rec, "id", (str, int), required=False)
    difficulty = check_field(rec, "difficulty", (str, int, float), required=False)
    solution = check_field(rec, "solution", required=False, nonempty=False)
    answer, tests, starter = None, None, ""
    if domain == "code":
        if rec.get("input_output") is None:
            raise BadRecord("a code problem needs field 'input_output' (its tests)")
        tests = read_tests(rec["input_output"])
        starter = check_field(rec, "starter_code", required=False, nonempty=False) or ""
    else:
        answer = answer_text(check_field(rec, "answer", (str, int, float), nonempty=False))
    return Problem.make(domain=domain, question=question, source=f"local:{Path(cfg.path).name}", answer=answer,
                        tests=tests, starter_code=starter, difficulty=difficulty,
                        source_id=None if pid is None else str(pid),
                        meta={} if solution is None else {"solution": solution})
