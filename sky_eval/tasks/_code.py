"""What the code tasks share: taking the program out of a response, reading APPS/TACO tests, and judging with
sky_data's code judge (the one rejection sampling uses), in a sandbox.

Code extraction is `sky_data.verify.code.extract_code` (the last python block of the solution section); no
block, or an empty one: `Score(False, None, "no code")`.

Scoring: every response's code with its problem's tests goes to ONE `check_code_batch` call (each test of each
program is a job, `workers` at a time); a Score's reason is "passed" or the first failing test's
"status: reason". HumanEval programs are self-checking and go through `check_program` on a thread pool. An
unusable sandbox raises `SandboxUnavailable` before anything runs: nothing is judged outside one.
"""

from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from sky_data.verify import SandboxUnavailable, check_code_batch, check_program, isolation
from sky_data.verify.code import extract_code, verdict_reason  # noqa: F401  (re-exported for the tasks)
from sky_eval.tasks.base import Problem, Score, need

DEFAULT_TIMEOUT_S = 6.0  # per test, as check_code (and SkyThought's LiveCodeBench harness)
def score_tests(items: list[tuple[Problem, str]], workers: int | None = None, timeout_s: float | None = None,
                progress: bool = False) -> list[Score]:
    """Judge each response's code on its problem's tests (`problem.answer`: APPS/TACO `input_output` or a
    LiveCodeBench case list; `meta["starter_code"]`, `meta["fn_name"]`), all in one `check_code_batch` call."""
    codes = [extract_code(r) for _, r in items]
    todo = [i for i, c in enumerate(codes) if c is not None]
    scores = [Score(False, None, "no code") for _ in items]
    if not todo:
        return scores
    verdicts = check_code_batch(
        [(codes[i], items[i][0].answer) for i in todo],
        workers=workers,
        timeout_s=timeout_s or DEFAULT_TIMEOUT_S,
        starter_codes=[items[i][0].meta.get("starter_code") or "" for i in todo],
        fn_names=[items[i][0].meta.get("fn_name") for i in todo],
        progress=progress,
    )
    for i, v in zip(todo, verdicts):
        scores[i] = Score(v.passed, codes[i], verdict_reason(v))
    return scores


def score_programs(programs: list[str | None], codes: list[str | None], workers: int | None = None,
                   timeout_s: float | None = None, progress: bool = False) -> list[Score]:
    """Run self-checking programs (None: the response had no code) with `check_program` on a thread pool."""
    from tqdm.auto import tqdm

    if any(p is not None for p in programs) and (why := isolation()) is not None:
        raise SandboxUnavailable(f"isolated sandbox unavailable: {why}")
    scores = [Score(False, None, "no code") for _ in programs]
    timeout = timeout_s or DEFAULT_TIMEOUT_S

    def judge(i: int) -> Score:
        try:
            v = check_program(programs[i], timeout_s=timeout)
        except SandboxUnavailable:
            raise
        except Exception as e:  # noqa: BLE001  (one program's judge failure must not lose the batch)
            return Score(False, codes[i], f"judge_error: {type(e).__name__}: {e}"[:300])
        return Score(v.passed, codes[i], verdict_reason(v))

    todo = [i for i, p in enumerate(programs) if p is not None]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        futures = {pool.submit(judge, i): i for i in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="judging", unit="program",
                        disable=not progress):
            scores[futures[fut]] = fut.result()
    return scores


def read_input_output(value: Any, where: str, key: str = "input_output") -> dict | None:
    """APPS/TACO tests (a JSON string or an object) as a dict, or None when there are none usable: empty, no
    inputs, or as many inputs as outputs not being the case. A value that is not JSON is an error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: field {key!r} is not valid JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: field {key!r} must be an object with inputs and outputs, "
                         f"got {type(value).__name__}")
    ins, outs = value.get("inputs"), value.get("outputs")
    if not isinstance(ins, list) or not isinstance(outs, list) or not ins or len(ins) != len(outs):
        return None
    fn = value.get("fn_name")
    if fn is not None and not isinstance(fn, str):
        raise ValueError(f"{where}: field {key!r}: fn_name must be a string, got {type(fn).__name__}")
    return value


def chosen_difficulties(task: str, value: Any, known: tuple[str, ...]) -> list[str]:
    """The difficulty option as a list in `known` order; anything else is a ValueError naming the choices."""
    chosen = [value] if isinstance(value, str) else value
    if not isinstance(chosen, (list, tuple)) or not chosen or any(d not in known for d in chosen):
        raise ValueError(f"task {task!r}: option difficulty must be a non-empty list drawn from "
                         f"{', '.join(known)}, got {value!r}")
    return [d for d in known if d in chosen]


def code_problem(pid: int | str, rec: dict, where: str, level: str, tests: dict) -> Problem:
    """An APPS/TACO problem: the question, its `input_output` tests, starter code and fn_name."""
    return Problem(
        id=pid,
        question=need(rec, "question", where),
        answer=tests,
        meta={
            "difficulty": level,
            "starter_code": need(rec, "starter_code", where, required=False, nonempty=False) or "",
            "fn_name": tests.get("fn_name") or None,
            "url": rec.get("url"),
        },
    )


def warn_skipped(task: str, skipped: list[str]) -> None:
    if skipped:
        warnings.warn(f"{task}: skipped {len(skipped)} record(s) with no usable tests (first: {skipped[0]})",
                      stacklevel=3)
