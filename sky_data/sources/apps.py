"""APPS (codeparrot/apps): 10,000 Python problems judged on their `input_output` tests; the recipe's code.

Hub: codeparrot/apps is a loading-script dataset, which `datasets>=4` no longer runs, so its raw file
`<split>.jsonl` is read directly, line by line (huggingface_hub downloads and caches it): the most robust path,
since one bad line costs one record and the mixed types of its columns never meet Arrow. `path` may name that
file (or any .jsonl/.json/.parquet copy), a directory holding `<split>.jsonl`, a `save_to_disk` save, or a
directory `load_dataset` reads.

A record: `question`, `input_output` (a JSON string, may be "") -> `tests`, `difficulty` (introductory,
interview, competition; `subsets` filters on it), `problem_id` (`id` in the raw file) -> `source_id`,
`starter_code`, `url`. A record without usable tests is rejected ("no tests"): nothing can pass it.
`read_tests` is shared with TACO and local files, which hold the same `input_output`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sky_data.schema import Problem
from sky_data.sources.rows import (
    BadRecord,
    Records,
    Row,
    check_field,
    check_subsets,
    file_records,
    hub_file,
    open_records,
)

if TYPE_CHECKING:
    from sky_data.config import SourceCfg

HUB = "codeparrot/apps"
DIFFICULTIES = ("introductory", "interview", "competition")


def records(cfg: SourceCfg) -> Records:
    check_subsets("apps", cfg.subsets, DIFFICULTIES)
    hub = cfg.hub_name or HUB
    if cfg.path is None and not Path(hub).is_dir():
        return file_records(hub_file(hub, f"{cfg.split}.jsonl"), "apps")
    return open_records(cfg.path, hub, cfg.hub_config, cfg.split, "apps")


def parse(row: Row, cfg: SourceCfg) -> Problem | None:
    rec = row.record
    level = check_field(rec, "difficulty")
    if cfg.subsets and level not in cfg.subsets:
        return None
    question = check_field(rec, "question")
    tests = read_tests(rec.get("input_output"))
    pid = check_field(rec, "problem_id" if "problem_id" in rec else "id", (int, str), required=False)
    starter = check_field(rec, "starter_code", required=False, nonempty=False) or ""
    return Problem.make(domain="code", question=question, source="apps", tests=tests, starter_code=starter,
                        difficulty=level, source_id=None if pid is None else str(pid),
                        meta={"url": rec.get("url")})


def read_tests(value: Any, key: str = "input_output") -> dict:
    """APPS/TACO tests `{"inputs": [...], "outputs": [...], "fn_name"?: str}` from a JSON string or an object.
    None, "", no inputs, or inputs and outputs of different lengths: a `BadRecord`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRecord(f"no tests ({key} is missing or empty)")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise BadRecord(f"{key} is not valid JSON ({e.msg})") from None
        except RecursionError:
            raise BadRecord(f"{key} is nested too deeply") from None
    if not isinstance(value, dict):
        raise BadRecord(f"{key} must be an object with inputs and outputs, got {type(value).__name__}")
    ins, outs = value.get("inputs"), value.get("outputs")
    if not isinstance(ins, list) or not isinstance(outs, list):
        raise BadRecord(f"{key}: inputs and outputs must be lists, got {type(ins).__name__} and "
                        f"{type(outs).__name__}")
    if not ins:
        raise BadRecord(f"no tests ({key} has no inputs)")
    if len(ins) != len(outs):
        raise BadRecord(f"{key} has {len(ins)} inputs but {len(outs)} outputs")
    fn = value.get("fn_name")
    if fn is not None and (not isinstance(fn, str) or not fn.strip()):
        raise BadRecord(f"{key}: fn_name must be a non-empty string, got {type(fn).__name__} {str(fn)[:40]!r}")
    try:
        json.dumps(value)  # the content id hashes it: it must be plain JSON, and not nested past the stack
    except RecursionError:
        raise BadRecord(f"{key} is nested too deeply") from None
    except (TypeError, ValueError) as e:
        raise BadRecord(f"{key} is not plain JSON ({e})") from None
    return value

