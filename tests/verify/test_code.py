"""The code judge: test formats, comparison rules, every failure status is a failure, batches, HumanEval.

The sandbox under hostile programs is tested in test_sandbox.py."""

from __future__ import annotations

import base64
import json
import os
import pickle
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import SHARED

from sky_data.verify.bench import humaneval_call_tests, load_items
from sky_data.verify.code import (
    check_code,
    check_code_batch,
    check_program,
    compare_output,
    decode_lcb_private_tests,
)

DOUBLE = {"inputs": ["3\n", "10\n"], "outputs": ["6\n", "20\n"]}


# ---------------------------------------------------------------- formats


def test_stdin_program_passes_and_reads_open0_and_buffer():
    assert check_code("print(int(input()) * 2)", DOUBLE).passed
    assert check_code("print(int(open(0).read()) * 2)", DOUBLE).passed
    assert check_code("import sys\nprint(int(sys.stdin.buffer.read()) * 2)", json.dumps(DOUBLE)).passed


def test_main_guard_runs_and_exit0_after_output_passes():
    code = "import sys\ndef main():\n    print(int(input())*2)\n    sys.exit(0)\nif __name__ == '__main__':\n    main()\n"
    assert check_code(code, DOUBLE).passed
    assert check_code("print(int(input())*2)\nexit(0)", DOUBLE).passed


def test_call_based_function_and_solution_method():
    tests = {"fn_name": "add", "inputs": [[1, 2], [5, 5]], "outputs": [3, 10]}
    assert check_code("def add(a, b):\n    return a + b", tests).passed
    assert check_code("class Solution:\n    def add(self, a: int, b: int) -> int:\n        return a + b", tests).passed
    assert not check_code("def add(a, b):\n    return a - b", tests).passed


def test_call_based_accepts_wrapped_outputs_and_tuple_for_list():
    wrapped = {"fn_name": "pair", "inputs": [[1]], "outputs": [[[1, 2]]]}
    assert check_code("def pair(a):\n    return (a, a + 1)", wrapped).passed
    assert check_code("def pair(a):\n    return [a, a + 1]", {**wrapped, "outputs": [[1, 2]]}).passed
    assert check_code("def f(x):\n    return x", {"fn_name": "f", "inputs": [[7]], "outputs": [[7]]}).passed


def test_user_prints_do_not_confuse_call_based_result():
    tests = {"fn_name": "f", "inputs": [[2]], "outputs": [4]}
    assert check_code("def f(x):\n    print('debug', x)\n    return x * x", tests).passed


def test_lcb_public_stdin_and_functional():
    stdin_tests = [{"input": "3\n", "output": "6\n", "testtype": "stdin"}]
    assert check_code("print(int(input())*2)", stdin_tests).passed
    starter = "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        "
    code = ("class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
            "        seen = {}\n        for i, x in enumerate(nums):\n"
            "            if target - x in seen:\n                return [seen[target - x], i]\n"
            "            seen[x] = i\n")
    fn_tests = [{"input": "[2, 7, 11, 15]\n9", "output": "[0, 1]", "testtype": "functional"}]
    assert check_code(code, fn_tests, starter_code=starter).passed
    assert not check_code(code.replace("[seen[target - x], i]", "[i, i]"), fn_tests, starter_code=starter).passed


def test_lcb_private_tests_decode_and_judge():
    sample = [{"input": "4\n", "output": "8\n", "testtype": "stdin"}, {"input": "0\n", "output": "0", "testtype": "stdin"}]
    encoded = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(sample)))).decode()
    decoded = decode_lcb_private_tests(encoded)
    assert decoded == sample
    assert check_code("print(int(input())*2)", decoded).passed


def test_starter_code_is_prepended_when_code_lacks_the_function():
    starter = "def helper(x):\n    return x + 1\n\ndef solve(x):\n    return helper(x) * 2\n"
    tests = {"fn_name": "solve", "inputs": [[1]], "outputs": [4]}
    assert check_code("# model wrote nothing useful", tests, starter_code=starter).passed


# ---------------------------------------------------------------- comparison


def test_trailing_whitespace_and_blank_lines_are_ignored():
    assert compare_output("1 2  \n3\n\n\n", "1 2\n3") is None
    assert check_code("print('6   ')\nprint()\nprint()", {"inputs": [""], "outputs": ["6"]}).passed


def test_floats_within_tolerance_are_equal_and_token_difference_fails():
    assert compare_output("0.3333333", "0.333333333") is None
    assert compare_output("1000000.0000001", "1000000") is None
    assert compare_output("0.334", "0.333") is not None
    assert "token 1" in compare_output("1 2 3", "1 5 3")
    assert compare_output("1 2", "1 2 3") is not None
    assert compare_output("abc", "abd") is not None


# ---------------------------------------------------------------- comparison under attack


@pytest.mark.parametrize("got", ["inf", "1e999", "-Infinity", "Infinity", "nan", "NaN", "+inf", "1" * 400])
def test_non_finite_output_matches_no_number(got):
    # abs(inf - 7) <= 1e-6 * inf is true: a non-finite token must not be compared with a tolerance at all.
    for expected in ("7", "7.5", "0", "1e308"):
        assert compare_output(got, expected) is not None, (got, expected)
    assert not check_code(f"print('{got}')", {"inputs": [""], "outputs": ["7"]}).passed


def test_a_non_finite_token_equals_only_itself():
    assert compare_output("inf", "inf") is None
    assert compare_output("inf", "-inf") is not None and compare_output("nan", "nan") is None  # same token
    assert compare_output("inf", "1e999") is not None


@pytest.mark.parametrize(
    ("got", "expected"),
    [("1000000006", "1000000007"), ("1000001", "1000000"), ("999999999999999999", "1000000000000000000"),
     ("-1000000007", "1000000007"), ("1" * 5000, "1" * 4999 + "2"), ("10000000", "10000001")],
)
def test_integers_compare_exactly(got, expected):
    assert compare_output(got, expected) is not None
    assert not check_code(f"print({got!r})", {"inputs": [""], "outputs": [expected]}).passed


def test_integer_tokens_of_any_length_are_equal_by_value():
    assert compare_output("1" * 5000, "1" * 5000) is None  # no int() conversion: no 4300-digit ValueError
    assert compare_output("007", "7") is None and compare_output("-0", "0") is None
    # either side written as a float: the tolerance applies
    assert compare_output("7.0000001", "7") is None and compare_output("1000000007", "1000000007.0") is None
    assert compare_output("0.3333333", "0.333333333") is None


@pytest.mark.parametrize(
    "returned",
    ["float('inf')", "float('-inf')", "float('nan')", "[float('inf')] * 3", "[4, 8, float('nan')]", "1e308 * 10"],
)
def test_call_based_non_finite_results_fail(returned):
    tests = {"fn_name": "f", "inputs": [[0]], "outputs": [[4, 8, 15]]}
    v = check_code(f"def f(x):\n    return {returned}", tests)
    assert not v.passed and v.status == "wrong_answer", v.outcomes
    scalar = {"fn_name": "f", "inputs": [[0]], "outputs": [7]}
    assert not check_code(f"def f(x):\n    return {returned}", scalar).passed


def test_call_based_integers_are_exact_and_floats_tolerant():
    tests = {"fn_name": "f", "inputs": [[0]], "outputs": [1000000007]}
    assert not check_code("def f(x):\n    return 1000000006", tests).passed
    assert check_code("def f(x):\n    return 1000000007", tests).passed
    assert check_code("def f(x):\n    return 0.1 + 0.2", {"fn_name": "f", "inputs": [[0]], "outputs": [0.3]}).passed


# ---------------------------------------------------------------- hostile output never crashes the judge


HOSTILE_RESULTS = {
    "over the output cap": "return 'x' * (5 << 20)",
    "a 5000-digit integer": "return 10 ** 5000",
    "a list nested 100000 deep": "a = []\n    for _ in range(100000):\n        a = [a]\n    return a",
    "a list nested 900 deep": "a = []\n    for _ in range(900):\n        a = [a]\n    return a",
    "a self-referencing list": "a = []\n    a.append(a)\n    return a",
    "an object whose repr raises": "class X:\n        def __repr__(self):\n            raise ValueError('no')\n    return X()",
    "an always-equal object": "class X:\n        def __eq__(self, other):\n            return True\n    return X()",
    "a forged record": "import os\n    os.write(3, b'deadbeef 5\\n[1, 2]' + b'x' * 100)\n    os._exit(0)",
    "a malformed record": "import os\n    os.write(3, b'\\xff' * 1000)\n    return 7.5",
    "a closed record pipe": "import os\n    os.close(3)\n    return 1",
    "a fake result printed": "print('\\x00__sky_result__\\x00[4, 8, 15]')\n    import os\n    os._exit(0)",
    "stdout and stderr floods": "import sys\n    sys.stdout.write('y' * (9 << 20))\n    sys.stderr.write('z' * (9 << 20))\n    return 0",
}


@pytest.mark.parametrize("name", list(HOSTILE_RESULTS))
def test_a_hostile_result_is_a_failed_test_with_a_reason(name):
    tests = {"fn_name": "f", "inputs": [[0]], "outputs": [[4, 8, 15]]}
    v = check_code(f"def f(x):\n    {HOSTILE_RESULTS[name]}", tests, timeout_s=10.0)
    assert not v.passed and v.status in ("wrong_answer", "runtime_error", "memory"), v.outcomes
    assert v.outcomes[0].reason, v.outcomes


@pytest.mark.parametrize(
    "source",
    ["(" * 200_000, "x = " + "+".join(["1"] * 300_000), "def f(:\n", "x = 1\0", "\ud800 = 1",
     "x = [" * 5000 + "]" * 5000, "'" + "a" * 10_000_000],
)
def test_a_source_that_breaks_compile_is_a_compile_error_in_the_sandbox(source):
    # compile() runs inside the sandbox: MemoryError, RecursionError or SyntaxError there, never in the judge.
    v = check_code(source, {"inputs": [""], "outputs": ["1"]}, timeout_s=10.0)
    assert not v.passed and v.status in ("compile_error", "memory", "runtime_error", "timeout"), v.outcomes
    assert check_program(source, timeout_s=10.0).status in ("compile_error", "memory", "runtime_error", "timeout")


def test_a_batch_keeps_every_verdict_whatever_the_items_do():
    # One verdict per item, however hostile the others: the old judge lost the whole batch to one bad result.
    call = {"fn_name": "f", "inputs": [[1], [2]], "outputs": [1, 2]}
    items = [(f"def f(x):\n    {body}", call) for body in HOSTILE_RESULTS.values()]
    items += [("def f(x):\n    return x", call), ("(" * 200_000, call), ("def f(x):\n    return x", call)]
    verdicts = check_code_batch(items, workers=2, timeout_s=10.0)
    assert len(verdicts) == len(items)
    assert [v.passed for v in verdicts] == [False] * len(HOSTILE_RESULTS) + [True, False, True]


def test_a_judge_failure_on_one_test_is_that_tests_outcome(monkeypatch):
    # Not the program's doing (the sandbox itself failing): "judge_error" for that test, the batch goes on.
    import sky_data.verify.code as code_mod

    real = code_mod.run_sandboxed

    def flaky(files, argv, stdin, *a, **k):
        if stdin == "2\n":
            raise OSError("pretend: the fork server broke")
        return real(files, argv, stdin, *a, **k)

    monkeypatch.setattr(code_mod, "run_sandboxed", flaky)
    verdicts = check_code_batch([("print(int(input()))", {"inputs": ["1\n", "2\n"], "outputs": ["1", "2"]}),
                                 ("print(5)", {"inputs": [""], "outputs": ["5"]})], stop_on_failure=False)
    assert [o.status for o in verdicts[0].outcomes] == ["passed", "judge_error"] and verdicts[1].passed
    assert "pretend" in verdicts[0].outcomes[1].reason


# ---------------------------------------------------------------- self-checking programs: only a finished check passes


CHEATS = {
    "os._exit before the asserts": "import os\nos._exit(0)\nassert add(1, 1) == 3",
    "atexit os._exit after a failing assert": "import atexit, os\natexit.register(lambda: os._exit(0))\nassert add(1, 1) == 3",
    "SystemExit(0)": "raise SystemExit(0)\nassert add(1, 1) == 3",
    "exit() builtin": "exit()\nassert add(1, 1) == 3",
    "sys.exit from a thread that wins": ("import threading, os, time\n"
                                         "threading.Thread(target=lambda: os._exit(0)).start()\ntime.sleep(5)\n"
                                         "assert add(1, 1) == 3"),
    "SIGKILL to itself": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "a guessed record": ("import os, json\npayload = json.dumps({'completed': True}).encode()\n"
                         "for n in ('0' * 32, 'ffff', ''):\n    os.write(3, f'{n} {len(payload)}\\n'.encode() + payload)\n"
                         "os._exit(0)"),
    "KeyboardInterrupt swallowed by excepthook": ("import sys\nsys.excepthook = lambda *a: None\n"
                                                  "assert add(1, 1) == 3"),
    "a patched sys.exit": "import sys\nsys.exit = lambda *a: None\nraise SystemExit(0)",
}


@pytest.mark.parametrize("name", list(CHEATS))
def test_a_self_checking_program_that_leaves_early_does_not_pass(name):
    program = "def add(a, b):\n    return a + b\n\n" + CHEATS[name]
    v = check_program(program, timeout_s=10.0)
    assert not v.passed, (name, v.outcomes)


def test_a_self_checking_program_that_finishes_passes_and_stdout_is_ignored():
    ok = "def add(a, b):\n    return a + b\n\nprint('noise')\nassert add(1, 1) == 2\n"
    assert check_program(ok).passed
    assert check_program(ok + "import threading\nthreading.Thread(target=print).start()\n").passed
    assert not check_program(ok + "import atexit, os\natexit.register(lambda: os._exit(3))\n").passed


# ---------------------------------------------------------------- failures are failures (the Sky-T1 bug)


def test_compile_error_is_not_a_pass():
    v = check_code("def f(:\n  pass", DOUBLE)
    assert not v.passed and v.outcomes[0].status == "compile_error"


def test_runtime_error_is_not_a_pass_and_names_the_exception():
    v = check_code("raise ValueError('boom')", DOUBLE)
    assert not v.passed and v.outcomes[0].status == "runtime_error"
    assert "ValueError: boom" in v.outcomes[0].reason


def test_correct_output_then_crash_is_runtime_error():
    v = check_code("print(int(input())*2)\nraise SystemExit(3)", DOUBLE)
    assert not v.passed and v.outcomes[0].status == "runtime_error"


def test_wrong_answer_is_not_a_pass_and_every_test_must_pass():
    v = check_code("x = int(input())\nprint(6 if x == 3 else 0)", DOUBLE, stop_on_failure=False)
    assert not v.passed
    assert [o.status for o in v.outcomes] == ["passed", "wrong_answer"]


def test_no_tests_is_not_a_pass():
    assert not check_code("print(1)", {"inputs": [], "outputs": []}).passed


# ---------------------------------------------------------------- throughput


def test_batch_keeps_order_and_runs_in_parallel():
    items = [(f"import time\ntime.sleep(0.5)\nprint({i})", {"inputs": [""], "outputs": [str(i)]}) for i in range(8)]
    items[3] = ("print('wrong')", items[3][1])
    t0 = time.monotonic()
    verdicts = check_code_batch(items, workers=8)
    elapsed = time.monotonic() - t0
    assert [v.passed for v in verdicts] == [i != 3 for i in range(8)]
    assert elapsed < 8 * 0.5 * 0.75, f"batch took {elapsed:.1f} s; sequential would be ~4 s"


def test_batch_runs_the_tests_of_one_problem_in_parallel():
    code = "import time\nn = int(input())\ntime.sleep(0.5)\nprint(2 * n)"
    tests = {"inputs": [f"{i}\n" for i in range(8)], "outputs": [f"{2 * i}\n" for i in range(8)]}
    t0 = time.monotonic()
    [v] = check_code_batch([(code, tests)], workers=8)
    assert v.passed and len(v.outcomes) == 8
    assert time.monotonic() - t0 < 8 * 0.5 * 0.75


def test_batch_verdicts_equal_one_at_a_time_verdicts():
    # The reference is check_code, one pair at a time: same pass/fail and same first failing status.
    items = [
        ("n = int(input())\nprint(2 * n)", DOUBLE),
        ("n = int(input())\nprint(2 * n if n < 5 else 0)", DOUBLE),  # second test wrong
        ("print(1/0)", DOUBLE),
        ("def f(:\n", DOUBLE),
        ("def add(a, b):\n    return a + b", {"fn_name": "add", "inputs": [[1, 2], [3, 4]], "outputs": [3, 7]}),
        ("while True: pass", {"inputs": ["1"], "outputs": ["1"]}),
    ]
    batch = check_code_batch(items, workers=4, timeout_s=1.0)
    single = [check_code(c, t, timeout_s=1.0) for c, t in items]
    assert [v.passed for v in batch] == [v.passed for v in single] == [True, False, False, False, True, False]
    assert [v.status for v in batch] == [v.status for v in single]
    assert [v.status for v in batch] == ["passed", "wrong_answer", "runtime_error", "compile_error", "passed", "timeout"]


def test_batch_stops_a_failed_problem_early_and_can_run_all_tests():
    # Tests 1..5 sleep; test 0 fails at once. With one worker the sleepers are skipped after the failure.
    code = "import time\nn = int(input())\nif n: time.sleep(0.3)\nprint(n + (n == 0))"
    tests = {"inputs": [f"{i}\n" for i in range(6)], "outputs": [f"{i}\n" for i in range(6)]}
    t0 = time.monotonic()
    [v] = check_code_batch([(code, tests)], workers=1)
    assert not v.passed and [o.status for o in v.outcomes] == ["wrong_answer"] and time.monotonic() - t0 < 1.0
    [v] = check_code_batch([(code, tests)], workers=3, stop_on_failure=False)
    assert not v.passed and [o.status for o in v.outcomes] == ["wrong_answer"] + ["passed"] * 5


def test_batch_names_the_malformed_item():
    items = [("print(1)", {"inputs": [""], "outputs": ["1"]}), ("print(1)", {"inputs": ["", ""], "outputs": ["1"]})]
    with pytest.raises(ValueError, match=r"item 1: malformed tests: 2 inputs but 1 outputs"):
        check_code_batch(items)


# ---------------------------------------------------------------- real data: HumanEval


def _humaneval() -> list[dict]:
    path = SHARED / "data/humaneval/test.jsonl"
    if not path.exists():
        pytest.skip(f"HumanEval not found at {path} (shared data absent)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _he_program(p: dict, solution: str) -> str:
    """HumanEval is self-checking: prompt + body + test + check(entry_point), judged by `check_program`."""
    return p["prompt"] + solution + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail():
    problems = _humaneval()
    programs = [_he_program(p, p["canonical_solution"]) for p in problems]
    wrong = [_he_program(p, "    return None\n") for p in problems]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # ~10 s for 328 programs on 2 cores
        verdicts = list(pool.map(lambda prog: check_program(prog, timeout_s=10.0), programs + wrong))
    n = len(problems)
    failed = [problems[i]["task_id"] for i in range(n) if not verdicts[i].passed]
    passed_wrong = [problems[i]["task_id"] for i in range(n) if verdicts[n + i].passed]
    assert n == 164
    assert not failed, f"canonical solutions judged failing: {failed}"
    assert not passed_wrong, f"'return None' judged passing: {passed_wrong}"


def test_humaneval_asserts_become_call_based_tests():
    problem = {"entry_point": "f", "test": (
        "def check(candidate):\n"
        "    assert candidate(1, [2, 3]) == (4, 5)\n"      # kept; the tuple result becomes a list
        "    assert candidate('a') == 'b', 'message'\n"    # kept
        "    assert candidate((1, 2)) == 3\n"              # a tuple argument would change type: left out
        "    assert abs(candidate(1.0) - 2) < 1e-6\n"      # not an equality on the call: left out
        "    assert candidate(x) == 1\n"                   # not a literal: left out
        "    assert candidate(float('inf')) == 1\n")}      # not a literal either
    assert humaneval_call_tests(problem) == {"fn_name": "f", "inputs": [[1, [2, 3]], ["a"]], "outputs": [[4, 5], "b"]}


@pytest.mark.slow
def test_humaneval_as_call_based_tests_canonical_pass_and_wrong_fail():
    # Real data through the APPS-style call-based path, one process per test (~1200 runs, ~30 s on 2 cores).
    path = SHARED / "data/humaneval/test.jsonl"
    if not path.exists():
        pytest.skip(f"HumanEval not found at {path} (shared data absent)")
    items = load_items(path, None)
    n = len(items) // 2
    verdicts = check_code_batch(items, timeout_s=10.0)
    assert n >= 150 and sum(len(t["inputs"]) for _, t in items[:n]) >= 1000
    failed = [(items[i][1]["fn_name"], verdicts[i].outcomes[-1]) for i in range(n) if not verdicts[i].passed]
    assert not failed, f"canonical solutions failing their own asserts: {failed[:5]}"
    assert not any(v.passed for v in verdicts[n:])
