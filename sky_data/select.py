"""Rejection sampling's judge: is a sample in the Sky-T1 format, and is its solution right?

    checks = judge([(problem, text), ...], require_format=True, math_timeout_s=5, code_timeout_s=6)
    checks[0].ok, checks[0].reason      # True, "passed" / False, "wrong_answer: not equivalent"

Format (`format_error`): the four markers `<|begin_of_thought|>`, `<|end_of_thought|>`, `<|begin_of_solution|>`,
`<|end_of_solution|>` each appear exactly once and in that order, the thought and the solution are not
empty, and nothing but whitespace stands before the first marker or after the last (that text would be
trained on). Correctness is judged on the solution section only when the format is required, so an answer
written in the thought and never concluded does not pass:
- math and science: `sky_data.verify.check_math` against the problem's gold answer (its last `\\boxed{}`);
- code: the last python block (`sky_data.verify.extract_code`) must pass EVERY test of the problem, run in the
  sandbox (`check_code_batch`); crashes, timeouts and wrong output all fail, unlike the original's checker.

Reasons are short and stable, for report.json's counts: "passed", "missing_markers: ...", "no_answer",
"wrong_answer: ...", "no_code", "tests_failed: <status>: <reason>", "judge_error: ...".
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tqdm.auto import tqdm

from sky_data.schema import Problem
from sky_data.verify import check_code_batch, check_math, extract_code, verdict_reason

__all__ = ["MARKERS", "Check", "format_error", "judge", "solution_section"]

MARKERS = ("<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>", "<|end_of_solution|>")


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str


def format_error(text: str) -> str | None:
    """Why `text` is not in the four-marker format, or None when it is."""
    counts = [text.count(m) for m in MARKERS]
    missing = [m for m, c in zip(MARKERS, counts) if c == 0]
    if missing:
        return "missing_markers: " + " ".join(missing)
    repeated = [m for m, c in zip(MARKERS, counts) if c > 1]
    if repeated:
        return "repeated_markers: " + " ".join(repeated)
    at = [text.index(m) for m in MARKERS]
    if at != sorted(at):
        return "markers_out_of_order"
    if text[:at[0]].strip() or text[at[3] + len(MARKERS[3]):].strip():
        return "text_outside_markers"
    if not text[at[0] + len(MARKERS[0]):at[1]].strip():
        return "empty_thought"
    if not text[at[2] + len(MARKERS[2]):at[3]].strip():
        return "empty_solution"
    if text[at[1] + len(MARKERS[1]):at[2]].strip():
        return "text_between_sections"
    return None


def solution_section(text: str) -> str:
    """The text between `<|begin_of_solution|>` and `<|end_of_solution|>` (call only on well-formed text)."""
    return text.split(MARKERS[2], 1)[1].split(MARKERS[3], 1)[0]


def judge(items: list[tuple[Problem, str]], require_format: bool, math_timeout_s: float = 5.0,
          code_timeout_s: float = 6.0, workers: int | None = None, progress: bool = False) -> list[Check]:
    """One Check per (problem, text), in order. Never raises for what a text holds; an unusable code sandbox
    (`SandboxUnavailable`) raises before any program runs: nothing is judged outside one."""
    checks: list[Check | None] = [None] * len(items)
    graded: list[tuple[int, str]] = []  # (item, the text its answer or program is taken from)
    for i, (_, text) in enumerate(items):
        why = format_error(text) if require_format else None
        if why is not None:
            checks[i] = Check(False, why)
        else:
            graded.append((i, solution_section(text) if require_format else text))

    code = [(i, t) for i, t in graded if items[i][0].domain == "code"]
    math = [(i, t) for i, t in graded if items[i][0].domain != "code"]
    bar = tqdm(total=len(graded), desc="verify", unit="sample", disable=not progress or not graded)

    def math_one(i: int, text: str) -> Check:
        try:
            v = check_math(text, items[i][0].answer or "", timeout_s=math_timeout_s)
        except Exception as e:  # noqa: BLE001 - one bad gold answer must not lose the batch
            return Check(False, f"judge_error: {type(e).__name__}: {e}"[:300])
        if v.correct:
            return Check(True, "passed")
        return Check(False, "no_answer" if v.extracted is None else f"wrong_answer: {v.reason}")

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for (i, _), check in zip(math, pool.map(lambda it: math_one(*it), math)):
            checks[i] = check
            bar.update(1)

    programs = [(i, extract_code(t)) for i, t in code]
    for i, prog in programs:
        if prog is None:
            checks[i] = Check(False, "no_code")
            bar.update(1)
    runnable = [(i, prog) for i, prog in programs if prog is not None]
    if runnable:
        try:
            verdicts = check_code_batch([(prog, items[i][0].tests) for i, prog in runnable], workers=workers,
                                        timeout_s=code_timeout_s,
                                        starter_codes=[items[i][0].starter_code for i, _ in runnable])
            results = [Check(v.passed, "passed" if v.passed else f"tests_failed: {verdict_reason(v)}"[:300])
                       for v in verdicts]
        except ValueError as e:  # malformed tests of one problem: name it, judge nothing of this batch as passed
            results = [Check(False, f"judge_error: {e}"[:300]) for _ in runnable]
        for (i, _), check in zip(runnable, results):
            checks[i] = check
            bar.update(1)
    bar.close()
    assert all(c is not None for c in checks)
    return checks  # type: ignore[return-value]
