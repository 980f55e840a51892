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
