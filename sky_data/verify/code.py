"""The code judge: run a candidate program against its tests in a subprocess and say whether EVERY test passed.

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
ignored; then the outputs are compared token by token (split on whitespace); two tokens that both parse as
floats are equal within 1e-6 absolute or relative. `reason` names the first differing line and token.

Conventions: `open(0)` / `sys.stdin.buffer` work; a stdin program runs as `__main__`; `exit(0)` after correct
output passes; correct output followed by a non-zero exit is a runtime_error; a syntax error is a
compile_error (checked with `compile()` in the parent, which executes nothing). A MemoryError raised under
RLIMIT_AS is reported as "memory"; a process killed without a Python traceback (e.g. SIGKILL) is a
runtime_error. A CPU-limit kill (SIGXCPU) or a wall-clock overrun is a timeout.

Sandbox (`sandbox.py`): each test runs in its own `python -I` subprocess and session, in a fresh folder,
with a scrubbed environment, under rlimits (CPU timeout+1 s, address space `memory_mb`, file size 16 MB,
64 processes, no core files), with its whole process group SIGKILLed afterwards and output capped. On Linux it
also runs in its own pid, mount, network, IPC and UTS namespaces, as an unprivileged uid, with every host
mount read-only and private tmpfs for /tmp: fork bombs stop at the process limit, setsid() does not escape,
sockets reach nothing, files outside the sandbox cannot be written. `sandbox.isolation()` says whether this
machine allows it.
"""

from __future__ import annotations

import base64
import json
import math
import os
import pickle
import signal
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sky_data.verify.sandbox import SandboxRun, run_sandboxed

STATUSES = ("passed", "wrong_answer", "runtime_error", "timeout", "memory", "compile_error")
FLOAT_TOL = 1e-6
RESULT_MARK = "\x00__sky_result__\x00"

# Imports the common harnesses put in front of call-based solutions (LeetCode-style code assumes them).
CALL_PRELUDE = (
    "from typing import *\nimport sys, os, math, heapq, bisect, itertools, functools, collections, string, re\n"
    "from collections import *\nfrom functools import *\nfrom itertools import *\nfrom heapq import *\n"
    "from bisect import *\nfrom math import *\n"
)

# The child for call-based tests: exec the solution, call the function on JSON args from stdin, print result.
CALL_DRIVER = r"""
import json, sys
src = open("solution.py", encoding="utf-8").read()
ns = {"__name__": "__solution__"}
exec(compile(src, "solution.py", "exec"), ns)
name = sys.argv[1]
if "Solution" in ns and hasattr(ns["Solution"], name):
    fn = getattr(ns["Solution"](), name)
elif name in ns:
    fn = ns[name]
else:
    raise NameError(f"no function or Solution method named {name!r}")
args = json.loads(sys.stdin.read())
out = fn(*args)
def plain(x):
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (set, frozenset)):
        return sorted((plain(v) for v in x), key=repr)
    return x
sys.stdout.flush()
sys.stdout.write(MARK + json.dumps(plain(out), default=repr) + "\n")
"""


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


def _float_equal(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    if math.isnan(x) or math.isnan(y):
        return False
    return abs(x - y) <= FLOAT_TOL or abs(x - y) <= FLOAT_TOL * max(abs(x), abs(y))


def compare_output(got: str, expected: str) -> str | None:
    """None when `got` matches `expected` under the judge's rules, else a short reason."""
    g = [line.rstrip() for line in got.rstrip().split("\n")]
    e = [line.rstrip() for line in expected.rstrip().split("\n")]
    if g == e:
        return None
    gt, et = " ".join(g).split(), " ".join(e).split()
    for k, (a, b) in enumerate(zip(gt, et)):
        if a != b and not _float_equal(a, b):
            return f"token {k}: got {a[:40]!r}, expected {b[:40]!r}"
    if len(gt) != len(et):
        return f"got {len(gt)} tokens, expected {len(et)}"
    return None


def _values_equal(got: object, exp: object) -> bool:
    if isinstance(got, bool) or isinstance(exp, bool):
        return got == exp
    if isinstance(got, (int, float)) and isinstance(exp, (int, float)):
        return got == exp or _float_equal(str(got), str(exp))
    if isinstance(got, list) and isinstance(exp, list):
        return len(got) == len(exp) and all(_values_equal(a, b) for a, b in zip(got, exp))
    if isinstance(got, dict) and isinstance(exp, dict):
        return got.keys() == exp.keys() and all(_values_equal(got[k], exp[k]) for k in got)
    return got == exp


def compare_value(got: object, expected: object) -> str | None:
    """Call-based: `expected` may be the value or the value wrapped as `[x]`."""
    if _values_equal(got, expected):
        return None
    if isinstance(expected, list) and len(expected) == 1 and _values_equal(got, expected[0]):
        return None
    return f"got {json.dumps(got, default=repr)[:80]}, expected {json.dumps(expected, default=repr)[:80]}"


# ---------------------------------------------------------------- judging


def _failure(run: SandboxRun, timeout_s: float) -> TestOutcome | None:
    """The outcome of a run that did not exit cleanly, or None when it exited 0."""
    if run.returncode is None or run.returncode == -signal.SIGXCPU:
        return TestOutcome("timeout", f"exceeded {timeout_s} s", run.time_s)
    if run.returncode == 0:
        return None
    last = next((line for line in reversed(run.stderr.strip().split("\n")) if line.strip()), "")
    if "MemoryError" in last:
        return TestOutcome("memory", "MemoryError", run.time_s)
    if run.oom_killed:
        return TestOutcome("memory", "out of memory: its processes together passed the sandbox's limit", run.time_s)
    if run.returncode < 0:
        return TestOutcome("runtime_error", f"killed by signal {-run.returncode}", run.time_s)
    return TestOutcome("runtime_error", last[:200] or f"exit code {run.returncode}", run.time_s)


def _run_case(code: str, case: _Case, timeout_s: float, memory_mb: int, isolate: bool | None) -> TestOutcome:
    if case.fn_name is None:
        run = run_sandboxed({"main.py": code}, ["main.py"], str(case.input), timeout_s, memory_mb, isolate)
        if (bad := _failure(run, timeout_s)) is not None:
            return bad
        why = compare_output(run.stdout, str(case.output))
        return TestOutcome("wrong_answer" if why else "passed", why or "", run.time_s)
    files = {"solution.py": CALL_PRELUDE + code, "driver.py": CALL_DRIVER.replace("MARK", repr(RESULT_MARK), 1)}
    run = run_sandboxed(files, ["driver.py", case.fn_name], json.dumps(case.input), timeout_s, memory_mb, isolate)
    if (bad := _failure(run, timeout_s)) is not None:
        return bad
    if RESULT_MARK not in run.stdout:
        return TestOutcome("runtime_error", "no result returned", run.time_s)
    got = json.loads(run.stdout.rsplit(RESULT_MARK, 1)[1])
    why = compare_value(got, case.output)
    return TestOutcome("wrong_answer" if why else "passed", why or "", run.time_s)


# ---------------------------------------------------------------- public API


def _prepare(code: str, tests: dict | list | str, starter_code: str = "",
             fn_name: str | None = None) -> tuple[str, list[_Case], Verdict | None]:
    """The code to run, its cases, and a compile-error verdict when the code does not compile."""
    cases = _normalise_tests(tests)
    for c in cases:
        c.fn_name = c.fn_name or (fn_name if isinstance(c.input, list) else None)
        if isinstance(c.input, list) and c.fn_name is None:
            c.fn_name = _guess_fn_name(starter_code or code)
    if any(c.fn_name for c in cases) and starter_code and f"def {cases[0].fn_name}" not in code:
        code = starter_code + "\n" + code
    try:
        compile(code if not any(c.fn_name for c in cases) else CALL_PRELUDE + code, "<candidate>", "exec")
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes in the source
        return code, cases, Verdict(False, [TestOutcome("compile_error", f"{type(e).__name__}: {e}"[:200])])
    return code, cases, None


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
               isolate: bool | None = None) -> Verdict:
    """Judge `code` on `tests` (APPS/TACO input_output or LiveCodeBench cases). Passed only if every test passes.

    `starter_code` is prepended for call-based tests when the code does not define the function itself;
    `fn_name` names the function for LCB functional tests (LCB keeps it in the starter code's metadata).
    `stop_on_failure` skips the remaining tests after the first failure (the verdict is already False).
    `isolate`: None isolates in namespaces where possible, True requires it, False never (see `sandbox`).
    """
    code, cases, bad = _prepare(code, tests, starter_code, fn_name)
    if bad is not None:
        return bad
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
                     memory_mb: int = 1024, stop_on_failure: bool = True, isolate: bool | None = None,
                     starter_codes: list[str] | None = None, fn_names: list[str | None] | None = None,
                     progress: bool = False) -> list[Verdict]:
    """`check_code` over many (code, tests) pairs; verdicts in input order.

    Every test of every pair is one job, and `workers` jobs run at once (default: the CPU count), so a few
    problems with many tests use all cores as well as many problems do. Jobs are started pair by pair, and
    with `stop_on_failure` the remaining tests of a pair that has failed are skipped. Threads suffice: each
    waits on a subprocess. Peak memory is about `workers * memory_mb`. Malformed tests raise a ValueError
    naming the item before anything runs.
    """
    from tqdm.auto import tqdm

    prepared = []
    for i, (code, tests) in enumerate(items):
        try:
            starter = starter_codes[i] if starter_codes else ""
            prepared.append(_prepare(code, tests, starter, fn_names[i] if fn_names else None))
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"check_code_batch: item {i}: malformed tests: {e}") from e
    outcomes: list[list[TestOutcome | None]] = [[None] * len(cases) for _, cases, _ in prepared]
    failed = [bad is not None for _, _, bad in prepared]
    jobs = [(i, k) for i, (_, cases, bad) in enumerate(prepared) if bad is None for k in range(len(cases))]
    bar = tqdm(total=len(jobs), desc="judging", unit="test", disable=not progress)

    def job(ik: tuple[int, int]) -> None:
        i, k = ik
        if not (stop_on_failure and failed[i]):
            code, cases, _ = prepared[i]
            o = outcomes[i][k] = _run_case(code, cases[k], timeout_s, memory_mb, isolate)
            failed[i] = failed[i] or o.status != "passed"
        bar.update()

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(pool.map(job, jobs))
    bar.close()
    return [bad if bad is not None else _verdict(outcomes[i], stop_on_failure)
            for i, (_, _, bad) in enumerate(prepared)]


def check_program(program: str, timeout_s: float = 6.0, memory_mb: int = 1024, isolate: bool | None = None) -> Verdict:
    """A self-checking program (e.g. HumanEval: prompt + solution + test + `check(entry_point)`) passes when it
    exits 0 with empty input; its stdout is ignored."""
    try:
        compile(program, "<candidate>", "exec")
    except (SyntaxError, ValueError) as e:
        return Verdict(False, [TestOutcome("compile_error", f"{type(e).__name__}: {e}"[:200])])
    run = run_sandboxed({"main.py": program}, ["main.py"], "", timeout_s, memory_mb, isolate)
    bad = _failure(run, timeout_s)
    return Verdict(bad is None, [bad or TestOutcome("passed", "", run.time_s)])
