"""The code judge: run a candidate program against its tests in a sandbox and say whether EVERY test passed.

The original Sky-T1 APPS/TACO checker reduced per-test results with a truthiness test, so compile errors,
runtime errors and timeouts (codes -1/-2/-3) counted as passes. Here a program passes only when it has at
least one test and every `TestOutcome.status` is "passed".

Test formats (`check_code(code, tests)`):
- APPS/TACO `input_output`: a dict or JSON string `{"inputs": [...], "outputs": [...], "fn_name"?: str}`.
  Without `fn_name` each input is stdin and each output the expected stdout. With `fn_name` each input is an
  argument list for a top-level function `fn_name` or a method of `class Solution`; an expected output wrapped
  as `[x]` also accepts `x`, and a returned tuple equals an expected list (results go through JSON).
- LiveCodeBench: a list `[{"input", "output", "testtype": "stdin"|"functional"}]`; functional inputs are
  newline-separated JSON arguments and the output one JSON value. Private tests come base64 -> zlib ->
  pickle -> JSON string: pass them through `decode_lcb_private_tests` first.

Output comparison, like competitive judges: trailing whitespace on each line and trailing blank lines are
ignored; then the outputs are compared token by token (split on whitespace). Two integer tokens are equal
only when their values are (`1000000006` is not `1000000007`, at any length); where either token is written
as a float, they are equal within 1e-6 absolute or relative; a non-finite value (`inf`, `1e999`, `nan`)
equals nothing but the same token. Call-based results follow the same rules on JSON values. `reason` names
the first differing token.

Conventions: `open(0)` / `sys.stdin.buffer` work; a stdin program runs as `__main__`; `exit(0)` after correct
output passes; correct output followed by a non-zero exit is a runtime_error; a syntax error is a
compile_error (compiled inside the sandbox: `compile()` itself can be made to exhaust memory). A MemoryError
raised under RLIMIT_AS, or a kill by the run's memory cgroup, is "memory"; a process killed without a Python
traceback (e.g. SIGKILL) is a runtime_error. Overrunning the time limit (CPU time of all the run's processes,
see `sandbox`) is a timeout. A self-checking program (`check_program`) passes only when its checks ran to
the end: an early `exit(0)` or `os._exit(0)` fails.

The judge never raises for anything a program does: a result over the output cap, a malformed or forged
record, an integer of 5000 digits or a list nested 10^5 deep is a failed test with its reason. Only malformed
tests (ValueError) and an unusable sandbox (`SandboxUnavailable`) raise.

Sandbox (`sandbox.py`): each test runs in a process forked from a warm interpreter, in its own pid, mount,
IPC and network namespaces, as a fresh unprivileged uid, with a root filesystem that holds only the
interpreter, its libraries and a few packages, under rlimits and (as root) cgroups for memory and CPU. See
that module for what is contained and how.
"""

from __future__ import annotations

import base64
import json
import math
import os
import pickle
import re
import signal
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sky_data.verify.math import solution_regions
from sky_data.verify.sandbox import SandboxRun, run_sandboxed

STATUSES = ("passed", "wrong_answer", "runtime_error", "timeout", "memory", "compile_error", "judge_error")
FLOAT_TOL = 1e-6

# Imports the common harnesses put in front of call-based solutions (LeetCode-style code assumes them).
CALL_PRELUDE = (
    "from typing import *\nimport sys, os, math, heapq, bisect, itertools, functools, collections, string, re\n"
    "from collections import *\nfrom functools import *\nfrom itertools import *\nfrom heapq import *\n"
    "from bisect import *\nfrom math import *\n"
)


@dataclass
class TestOutcome:
    __test__ = False  # not a pytest class
    status: str  # one of STATUSES
    reason: str = ""
    time_s: float = 0.0


@dataclass
class Verdict:
    passed: bool
    outcomes: list[TestOutcome] = field(default_factory=list)

    @property
    def status(self) -> str:
        """The first non-passing status, or "passed"."""
        return next((o.status for o in self.outcomes if o.status != "passed"), "passed" if self.passed else "no_tests")


# ---------------------------------------------------------------- test formats


def decode_lcb_private_tests(s: str) -> list[dict]:
    """LiveCodeBench private test cases: base64 -> zlib -> pickle -> JSON string -> list of dicts."""
    # pickle only on data we trust (the LCB release); it is how the dataset is published.
    return json.loads(pickle.loads(zlib.decompress(base64.b64decode(s.encode("utf-8")))))


@dataclass
class _Case:
    input: object  # stdin text, or an argument list for call-based
    output: object  # expected stdout text, or the expected return value
    fn_name: str | None = None


def _normalise_tests(tests: dict | list | str) -> list[_Case]:
    if isinstance(tests, str):
        tests = json.loads(tests)
    if isinstance(tests, dict):  # APPS/TACO input_output
        fn = tests.get("fn_name") or None
        ins, outs = tests.get("inputs", []), tests.get("outputs", [])
        if len(ins) != len(outs):
            raise ValueError(f"{len(ins)} inputs but {len(outs)} outputs")
        cases = []
        for i, o in zip(ins, outs):
            if fn is None:
                i = "\n".join(i) if isinstance(i, list) else i
                o = "\n".join(o) if isinstance(o, list) else o
            cases.append(_Case(i, o, fn))
        return cases
    if isinstance(tests, list):  # LiveCodeBench
        cases = []
        for t in tests:
            if t.get("testtype", "stdin") == "functional":
                args = [json.loads(line) for line in t["input"].split("\n") if line.strip()]
                cases.append(_Case(args, json.loads(t["output"]), t.get("fn_name")))
            else:
                cases.append(_Case(t["input"], t["output"]))
        return cases
    raise TypeError(f"unsupported tests: {type(tests).__name__}")


# ---------------------------------------------------------------- comparison

_INT = re.compile(r"[+-]?\d+")


def _int_key(token: str) -> tuple[bool, str]:
    """An integer token's value as (negative, digits), exact at any length (int() stops at 4300 digits)."""
    digits = token.lstrip("+-").lstrip("0") or "0"
    return token.startswith("-") and digits != "0", digits


def _numbers_equal(x: float, y: float) -> bool:
    """Floats within FLOAT_TOL, absolute or relative. A non-finite number equals nothing but itself (nan not
    even that): `abs(inf - 7) <= 1e-6 * inf` is true, and would make `inf` match any answer."""
    if not (math.isfinite(x) and math.isfinite(y)):
        return x == y
    return abs(x - y) <= FLOAT_TOL or abs(x - y) <= FLOAT_TOL * max(abs(x), abs(y))


def _tokens_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    if _INT.fullmatch(a) and _INT.fullmatch(b):  # integers are exact: 1000000006 is not 1000000007
        return _int_key(a) == _int_key(b)
    try:  # the tolerance applies where either side is written as a float
        x, y = float(a), float(b)
    except ValueError:
        return False
    if not (math.isfinite(x) and math.isfinite(y)):
        return False  # the strings differ; "inf" only ever equals "inf" (and 1e999 overflows to inf)
    return _numbers_equal(x, y)


def compare_output(got: str, expected: str) -> str | None:
    """None when `got` matches `expected` under the judge's rules, else a short reason."""
    g = [line.rstrip() for line in got.rstrip().split("\n")]
    e = [line.rstrip() for line in expected.rstrip().split("\n")]
    if g == e:
        return None
    gt, et = " ".join(g).split(), " ".join(e).split()
    for k, (a, b) in enumerate(zip(gt, et)):
        if not _tokens_equal(a, b):
            return f"token {k}: got {a[:40]!r}, expected {b[:40]!r}"
    if len(gt) != len(et):
        return f"got {len(gt)} tokens, expected {len(et)}"
    return None


def _values_equal(got: object, exp: object) -> bool:
    """JSON values: ints exact, floats within the tolerance, lists in order, dicts by key. Iterative, so a
    deeply nested result cannot exhaust the judge's stack."""
    stack = [(got, exp)]
    while stack:
        g, e = stack.pop()
        if isinstance(g, bool) or isinstance(e, bool):
            same = g == e
        elif isinstance(g, int) and isinstance(e, int):
            same = g == e
        elif isinstance(g, (int, float)) and isinstance(e, (int, float)):
            try:
                same = _numbers_equal(float(g), float(e))
            except OverflowError:  # an int too large for a float, against a float: not within any tolerance
                same = False
        elif isinstance(g, list) and isinstance(e, list):
            same = len(g) == len(e)
            stack.extend(zip(g, e))
        elif isinstance(g, dict) and isinstance(e, dict):
            same = g.keys() == e.keys()
            stack.extend((g[k], e[k]) for k in g if k in e)
        else:
            same = type(g) is type(e) and g == e
        if not same:
            return False
    return True


def _short(x: object) -> str:
    try:
        return json.dumps(x)[:80]
    except (ValueError, RecursionError, TypeError):
        return repr(type(x))


def compare_value(got: object, expected: object) -> str | None:
    """Call-based: `expected` may be the value or the value wrapped as `[x]`."""
    if _values_equal(got, expected):
        return None
    if isinstance(expected, list) and len(expected) == 1 and _values_equal(got, expected[0]):
        return None
    return f"got {_short(got)}, expected {_short(expected)}"


# ---------------------------------------------------------------- judging


def _failure(run: SandboxRun, timeout_s: float) -> TestOutcome | None:
    """The outcome of a run that did not end cleanly, or None when it exited 0."""
    if run.error:
        return TestOutcome("judge_error", run.error[:200], run.time_s)
    if run.record and "compile_error" in run.record:
        return TestOutcome("compile_error", str(run.record["compile_error"])[:200], run.time_s)
    if run.limit or run.returncode == -signal.SIGXCPU:
        how = "CPU time" if run.limit == "cpu" or run.returncode == -signal.SIGXCPU else "wall clock"
        return TestOutcome("timeout", f"exceeded {timeout_s} s ({how})", run.time_s)
    if run.returncode == 0:
        return None
    last = next((line for line in reversed(run.stderr.strip().split("\n")) if line.strip()), "")
    if last.startswith("MemoryError"):
        return TestOutcome("memory", "MemoryError", run.time_s)
    if run.oom_killed:
        return TestOutcome("memory", "out of memory: its processes together passed the sandbox's limit", run.time_s)
    if run.returncode < 0:
        return TestOutcome("runtime_error", f"killed by signal {-run.returncode}", run.time_s)
    return TestOutcome("runtime_error", last[:200] or f"exit code {run.returncode}", run.time_s)


def _run_case(code: str, case: _Case, timeout_s: float, memory_mb: int, isolate: bool) -> TestOutcome:
    if case.fn_name is None:
        run = run_sandboxed({"main.py": code}, ["main.py"], str(case.input), timeout_s, memory_mb, isolate)
        if (bad := _failure(run, timeout_s)) is not None:
            return bad
        why = compare_output(run.stdout, str(case.output))
        return TestOutcome("wrong_answer" if why else "passed", why or "", run.time_s)
    run = run_sandboxed({"solution.py": CALL_PRELUDE + code}, ["solution.py"], json.dumps(case.input), timeout_s,
                        memory_mb, isolate, mode="call", fn_name=case.fn_name)
    if (bad := _failure(run, timeout_s)) is not None:
        return bad
    if run.record is None or "result" not in run.record:
        return TestOutcome("runtime_error", run.record_error or "no result returned", run.time_s)
    why = compare_value(run.record["result"], case.output)
    return TestOutcome("wrong_answer" if why else "passed", why or "", run.time_s)


def _judge_error(e: Exception) -> TestOutcome:
    """A failure of the judge itself (never of the program): the test fails with the reason, and the rest
    of a batch goes on."""
    return TestOutcome("judge_error", f"{type(e).__name__}: {e}"[:200])


# ---------------------------------------------------------------- public API


def _prepare(code: str, tests: dict | list | str, starter_code: str = "",
             fn_name: str | None = None) -> tuple[str, list[_Case]]:
    """The code to run and its cases. Nothing is compiled here: a hostile source can make `compile()` run
    out of memory or recurse, so it is compiled inside the sandbox, which reports a compile error."""
    cases = _normalise_tests(tests)
    for c in cases:
        c.fn_name = c.fn_name or (fn_name if isinstance(c.input, list) else None)
        if isinstance(c.input, list) and c.fn_name is None:
            c.fn_name = _guess_fn_name(starter_code or code)
    if any(c.fn_name for c in cases) and starter_code and f"def {cases[0].fn_name}" not in code:
        code = starter_code + "\n" + code
    return code, cases


def _verdict(outcomes: list[TestOutcome | None], stop_on_failure: bool) -> Verdict:
    """Outcomes in test order; with `stop_on_failure`, cut after the first failure (skipped tests are None)."""
    kept = []
    for o in outcomes:
        if o is None:
            continue
        kept.append(o)
        if stop_on_failure and o.status != "passed":
            break
    passed = bool(outcomes) and all(o is not None and o.status == "passed" for o in outcomes)
    return Verdict(passed, kept)


def check_code(code: str, tests: dict | list | str, timeout_s: float = 6.0, memory_mb: int = 1024,
               starter_code: str = "", stop_on_failure: bool = True, fn_name: str | None = None,
               isolate: bool = True) -> Verdict:
    """Judge `code` on `tests` (APPS/TACO input_output or LiveCodeBench cases). Passed only if every test passes.

    `starter_code` is prepended for call-based tests when the code does not define the function itself;
    `fn_name` names the function for LCB functional tests (LCB keeps it in the starter code's metadata).
    `stop_on_failure` skips the remaining tests after the first failure (the verdict is already False).
    `timeout_s` is CPU time per test where the sandbox counts it (see `sandbox`). `isolate=False` judges
    WITHOUT the sandbox (trusted code only); the default raises `SandboxUnavailable` where it cannot isolate.
    Malformed tests raise ValueError; nothing the program does raises.
    """
    code, cases = _prepare(code, tests, starter_code, fn_name)
    outcomes: list[TestOutcome | None] = []
    for c in cases:
        outcomes.append(_run_case(code, c, timeout_s, memory_mb, isolate))
        if stop_on_failure and outcomes[-1].status != "passed":
            outcomes += [None] * (len(cases) - len(outcomes))
            break
    return _verdict(outcomes, stop_on_failure)


def _guess_fn_name(src: str) -> str | None:
    """The last `def name(` in the source (LCB starter code: `class Solution: def name(self, ...)`)."""
    names = [line.split("def ", 1)[1].split("(", 1)[0].strip() for line in src.split("\n") if "def " in line]
    return names[-1] if names else None


def check_code_batch(items: list[tuple[str, dict | list | str]], workers: int | None = None, timeout_s: float = 6.0,
                     memory_mb: int = 1024, stop_on_failure: bool = True, isolate: bool = True,
                     starter_codes: list[str] | None = None, fn_names: list[str | None] | None = None,
                     progress: bool = False) -> list[Verdict]:
    """`check_code` over many (code, tests) pairs; one verdict per pair, in input order, whatever the programs do.

    Every test of every pair is one job, and `workers` jobs run at once (default: the CPU count), so a few
    problems with many tests use all cores as well as many problems do. Jobs are started pair by pair, and
    with `stop_on_failure` the remaining tests of a pair that has failed are skipped. Threads suffice: each
    waits on a sandboxed process. Peak memory is about `workers * memory_mb`. Malformed tests raise a
    ValueError naming the item before anything runs; a failure of the judge on one test (not the program's
    doing) is that test's "judge_error" outcome, and the batch goes on.
    """
    from tqdm.auto import tqdm

    prepared = []
    for i, (code, tests) in enumerate(items):
        try:
            starter = starter_codes[i] if starter_codes else ""
            prepared.append(_prepare(code, tests, starter, fn_names[i] if fn_names else None))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ValueError(f"check_code_batch: item {i}: malformed tests: {e}") from e
    if isolate:
        from sky_data.verify.sandbox import SandboxUnavailable, isolation

        if (why := isolation()) is not None:  # before any job: not a per-test failure
            raise SandboxUnavailable(f"isolated sandbox unavailable: {why} (pass isolate=False to judge without a "
                                     "sandbox, only for code you trust)")
    outcomes: list[list[TestOutcome | None]] = [[None] * len(cases) for _, cases in prepared]
    failed = [False] * len(prepared)
    jobs = [(i, k) for i, (_, cases) in enumerate(prepared) for k in range(len(cases))]
    bar = tqdm(total=len(jobs), desc="judging", unit="test", disable=not progress)

    def job(ik: tuple[int, int]) -> None:
        i, k = ik
        if not (stop_on_failure and failed[i]):
            code, cases = prepared[i]
            try:
                o = _run_case(code, cases[k], timeout_s, memory_mb, isolate)
            except Exception as e:  # noqa: BLE001  (one test's judge failure must not lose the batch)
                o = _judge_error(e)
            outcomes[i][k] = o
            failed[i] = failed[i] or o.status != "passed"
        bar.update()

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(pool.map(job, jobs))
    bar.close()
    return [_verdict(outcomes[i], stop_on_failure) for i in range(len(prepared))]


def check_program(program: str, timeout_s: float = 6.0, memory_mb: int = 1024, isolate: bool = True) -> Verdict:
    """A self-checking program (e.g. HumanEval: prompt + solution + test + `check(entry_point)`) passes when it
    runs to its end, with empty input, and exits 0; its stdout is ignored. Leaving early does not pass, however
    it is done: `exit(0)`, `raise SystemExit(0)`, `os._exit(0)`, an atexit handler, a signal, a record written
    without the run's nonce. The checks themselves run inside the program's interpreter, so a program written
    against this judge's internals can still fool them: an object whose `__eq__` is always true passes
    `assert candidate(x) == y`, and the driver's nonce is in the same process (its frames, its memory). Where
    that matters, use call-based tests (`check_code` with `fn_name`): their results cross a JSON boundary and
    are compared by the judge."""
    run = run_sandboxed({"main.py": program}, ["main.py"], "", timeout_s, memory_mb, isolate, mode="program")
    if (bad := _failure(run, timeout_s)) is not None:
        return Verdict(False, [bad])
    if not (run.record and run.record.get("completed") is True):
        return Verdict(False, [TestOutcome("runtime_error", "exited before its checks ran to the end", run.time_s)])
    return Verdict(True, [TestOutcome("passed", "", run.time_s)])


# ---------------------------------------------------------------------------------------------------------
# The program of a response, and a verdict in a few words (shared by sky_data's selection and sky_eval)

PYTHON_TAGS = ("", "python", "py", "python3")

_FENCE = re.compile(r"^[ \t]*```+[ \t]*([\w+#.-]*)[^\n`]*$")  # an opening or closing fence line, and its tag


def extract_code(response: object) -> str | None:
    """The program of a response, or None when it has none.

    The last fenced block tagged python (`python`, `py`, `python3`, any case) or untagged, of the
    `<|begin_of_solution|> ... <|end_of_solution|>` section when the response has one and it holds such a block,
    else of the whole text (the same order as the math verifier's `extract_answer`). Fences are paired line by
    line, so a ```cpp block is skipped whole and never lends its closing fence to the next block; a block still
    open at the end (a truncated output) does not count; an empty block is no program.
    """
    if not isinstance(response, str):
        return None
    for region in solution_regions(response):
        blocks = [code for tag, code in _fenced_blocks(region) if tag.lower() in PYTHON_TAGS and code.strip()]
        if blocks:
            return blocks[-1]
    return None


_MARKER = re.compile(r"<\|(?:begin|end)_of_(?:thought|solution)\|>")


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(tag, code) of each closed fenced block, in order. A Sky-T1 marker glued to a fence
    ("```<|end_of_thought|>") is set on its own line first, so the fence still counts."""
    blocks, tag, lines = [], None, []
    for line in _MARKER.sub(lambda m: "\n" + m.group(0) + "\n", text).split("\n"):
        m = _FENCE.match(line)
        if tag is None:
            if m:
                tag, lines = m.group(1), []
        elif m and not m.group(1):  # a bare fence closes the block
            blocks.append((tag, "\n".join(lines) + "\n"))
            tag = None
        else:
            lines.append(line)
    return blocks


def verdict_reason(v: Verdict) -> str:
    """ "passed", or the first failing test's "status: reason" ("no tests" for a problem without any)."""
    if v.passed:
        return "passed"
    bad = next((o for o in v.outcomes if o.status != "passed"), None)
    if bad is None:
        return "no tests"
    return f"{bad.status}: {bad.reason}" if bad.reason else bad.status
