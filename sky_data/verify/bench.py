"""Code-judge throughput on real problems: tests per second against a naive one-process-at-a-time run.

    python -m sky_data.verify.bench                       # HumanEval from ../shared/data/humaneval
    python -m sky_data.verify.bench --limit 40 --workers 2 --data path/to/humaneval.jsonl

HumanEval's `check(candidate)` asserts of the form `assert candidate(args) == expected` (literal arguments
and results) become call-based `input_output` tests, one process per test, the way APPS/TACO problems are
judged during rejection sampling. Each problem is judged twice: with its canonical solution (every test
runs) and with a `return None` body (stops at the first failure). Every configuration judges the same items
in the same run; all must agree with the naive baseline on every verdict.

Rows: the naive baseline; the judge with one worker (what the sandbox costs against a bare subprocess); with
`--workers` and no isolation (`isolate=False`: one fresh interpreter per test, no fork server); and the
default (isolated: namespaces, minimal root, cgroups, each test forked from a warm fork server).

The naive baseline is what a first judge usually is: for each test in turn, write the files to a temp dir and
`subprocess.run([python, driver.py])` with a timeout; no sandbox, no parallelism.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sky_data.verify.code import CALL_PRELUDE, check_code_batch, compare_value
from sky_data.verify.sandbox import isolation

# The naive baseline's driver: exec the solution, call the function on JSON args from stdin, print the result.
NAIVE_MARK = "\x00__result__\x00"
NAIVE_DRIVER = f"""
import json, sys
ns = {{"__name__": "__solution__"}}
exec(compile(open("solution.py", encoding="utf-8").read(), "solution.py", "exec"), ns)
name = sys.argv[1]
fn = getattr(ns["Solution"](), name) if "Solution" in ns and hasattr(ns["Solution"], name) else ns[name]
out = fn(*json.loads(sys.stdin.read()))
plain = lambda x: [plain(v) for v in x] if isinstance(x, (list, tuple)) else x
sys.stdout.write({NAIVE_MARK!r} + json.dumps(plain(out), default=repr) + "\\n")
"""

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "humaneval" / "test.jsonl"


def _json_exact(x: object) -> bool:
    """True when `x` survives a JSON round trip unchanged (no tuples, sets, non-str keys, inf or nan)."""
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return True
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, list):
        return all(_json_exact(v) for v in x)
    if isinstance(x, dict):
        return all(isinstance(k, str) and _json_exact(v) for k, v in x.items())
    return False


def _listify(x: object) -> object:
    return [_listify(v) for v in x] if isinstance(x, (list, tuple)) else x


def humaneval_call_tests(problem: dict) -> dict:
    """The `assert candidate(*args) == expected` lines of a HumanEval problem's `check` as an APPS-style
    call-based `input_output` dict (other asserts, e.g. with tolerances or loops, are left out)."""
    inputs, outputs = [], []
    for node in ast.walk(ast.parse(problem["test"])):
        if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
            continue
        left, ops, right = node.test.left, node.test.ops, node.test.comparators
        if not (isinstance(left, ast.Call) and isinstance(left.func, ast.Name) and left.func.id == "candidate"
                and not left.keywords and len(ops) == 1 and isinstance(ops[0], ast.Eq)):
            continue
        try:
            args = [ast.literal_eval(a) for a in left.args]
            expected = _listify(ast.literal_eval(right[0]))  # the driver returns tuples as lists
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if _json_exact(args) and _json_exact(expected):
            inputs.append(args)
            outputs.append(expected)
    return {"fn_name": problem["entry_point"], "inputs": inputs, "outputs": outputs}


def load_items(path: Path, limit: int | None) -> list[tuple[str, dict]]:
    problems = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = []
    for p in problems[:limit]:
        tests = humaneval_call_tests(p)
        if tests["inputs"]:
            items.append((p["prompt"] + p["canonical_solution"], tests))
    return items + [(_wrong(code, t["fn_name"]), t) for code, t in items]


def _wrong(canonical: str, name: str) -> str:
    """The same program with the body of function `name` replaced by `return None`."""
    tree = ast.parse(canonical)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    fn.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


def naive(items: list[tuple[str, dict]], timeout_s: float) -> tuple[list[bool], int]:
    """One process at a time, stopping a problem at its first failure; returns verdicts and tests run."""
    verdicts, ran = [], 0
    driver = NAIVE_DRIVER
    for code, tests in items:
        ok = True
        for args, expected in zip(tests["inputs"], tests["outputs"]):
            ran += 1
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "solution.py").write_text(CALL_PRELUDE + code)
                Path(tmp, "driver.py").write_text(driver)
                try:
                    r = subprocess.run([sys.executable, "driver.py", tests["fn_name"]], input=json.dumps(args),
                                       check=False, capture_output=True, text=True, cwd=tmp, timeout=timeout_s)
                    ok = r.returncode == 0 and NAIVE_MARK in r.stdout and compare_value(
                        json.loads(r.stdout.rsplit(NAIVE_MARK, 1)[1]), expected) is None
                except subprocess.TimeoutExpired:
                    ok = False
            if not ok:
                break
        verdicts.append(ok)
    return verdicts, ran


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="HumanEval test.jsonl")
    ap.add_argument("--limit", type=int, default=None, help="first N problems only")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args(argv)
    if not args.data.exists():
        sys.exit(f"no HumanEval file at {args.data} (pass --data)")
    items = load_items(args.data, args.limit)
    n = len(items) // 2
    print(f"{n} HumanEval problems with {sum(len(t['inputs']) for _, t in items[:n])} call-based tests, judged "
          f"with the canonical and a wrong solution; {args.workers} workers; "
          f"isolation: {'namespaces' if isolation() is None else 'none (' + str(isolation()) + ')'}")

    rows = []
    t0 = time.perf_counter()
    ref, ran = naive(items, args.timeout)
    rows.append(("naive: one subprocess at a time, no sandbox", ran, time.perf_counter() - t0, ref))
    configs = [("judge, 1 worker, isolated", 1, True),
               (f"judge, {args.workers} workers, no isolation (isolate=False)", args.workers, False),
               (f"judge, {args.workers} workers, isolated (default)", args.workers, True)]
    for name, workers, isolate in configs:
        t0 = time.perf_counter()
        verdicts = check_code_batch(items, workers=workers, timeout_s=args.timeout, isolate=isolate, progress=True)
        rows.append((name, sum(len(v.outcomes) for v in verdicts), time.perf_counter() - t0,
                     [v.passed for v in verdicts]))

    base = rows[0][1] / rows[0][2]
    print(f"\n{'configuration':<58} {'tests':>6} {'seconds':>8} {'tests/s':>8} {'vs naive':>9}  verdicts")
    for name, tests, secs, verdicts in rows:
        agree = "agree" if verdicts == ref else f"{sum(a != b for a, b in zip(verdicts, ref))} DIFFER"
        print(f"{name:<58} {tests:>6} {secs:>8.1f} {tests / secs:>8.1f} {tests / secs / base:>8.2f}x  {agree}")
    canon_ok, wrong_ok = sum(ref[:n]), sum(ref[n:])
    print(f"\ncanonical solutions passing: {canon_ok}/{n}; wrong solutions passing: {wrong_ok}/{n}")
    print(json.dumps({"bench": "code_judge", "problems": n, "workers": args.workers,
                      "tests_per_s": {name: round(t / s, 2) for name, t, s, _ in rows}}))


if __name__ == "__main__":
    main()
