"""The rejection-sampling judge, the prompts, and the files that survive a kill (hand-made cases)."""

from __future__ import annotations

import json
import threading

import pytest

from sky_data.backends import Generation, SamplingConfig
from sky_data.cache import RequestCache, request_hash
from sky_data.prompts import CODE_CALL, CODE_STDIN, MATH_USER, load_prompt, render, user_prompt
from sky_data.schema import Problem
from sky_data.select import MARKERS, format_error, judge
from sky_data.store import AppendLog

B, E, S, F = MARKERS


def doc(thought: str = "think", solution: str = "\\boxed{4}") -> str:
    return f"{B}\n{thought}\n{E}\n\n{S}\n{solution}\n{F}"


@pytest.mark.parametrize("text, why", [
    (doc(), None),
    ("  \n" + doc() + "\n\n", None),
    (doc().replace(E, ""), "missing_markers: <|end_of_thought|>"),
    (doc() + f"\n{F}", "repeated_markers: <|end_of_solution|>"),
    (f"{S}\nx\n{F}\n{B}\ny\n{E}", "markers_out_of_order"),
    ("Sure! Here it is:\n" + doc(), "text_outside_markers"),
    (doc() + "\nHope this helps.", "text_outside_markers"),
    (doc(thought="  \n "), "empty_thought"),
    (doc(solution=""), "empty_solution"),
    (f"{B}\nx\n{E}\nstray\n{S}\ny\n{F}", "text_between_sections"),
])
def test_format_error(text, why):
    assert format_error(text) == why


def math(q: str, answer: str) -> Problem:
    return Problem.make(domain="math", question=q, answer=answer, source="t")


def test_math_is_judged_on_the_solution_section_only_when_the_format_is_required():
    p = math("2+2?", "4")
    in_thought_only = f"{B}\nmaybe \\boxed{{4}}\n{E}\n{S}\nI am not sure.\n{F}"
    checks = judge([(p, doc()), (p, doc(solution="\\boxed{5}")), (p, in_thought_only), (p, "plain \\boxed{4}"),
                    (p, doc(solution="\\boxed{\\frac{8}{2}}"))], require_format=True)
    assert [(c.ok, c.reason.split(":")[0]) for c in checks] == [
        (True, "passed"), (False, "wrong_answer"), (False, "no_answer"), (False, "missing_markers"),
        (True, "passed")]
    # the prefilter (no format) reads the answer wherever extract_answer finds it
    assert judge([(p, "plain \\boxed{4}")], require_format=False)[0].ok


ADD = {"inputs": ["1 2\n", "10 -3\n"], "outputs": ["3\n", "7\n"]}


def code(prog: str) -> str:
    return doc(solution=f"```python\n{prog}\n```")


def test_code_passes_only_when_every_test_passes_and_crashes_never_count():
    p = Problem.make(domain="code", question="Add two numbers.", tests=ADD, source="t")
    right = "a, b = map(int, input().split())\nprint(a + b)"
    checks = judge([(p, code(right)),
                    (p, code("a, b = map(int, input().split())\nprint(abs(a) + abs(b))")),  # fails the 2nd test
                    (p, code("raise SystemExit(3)")),  # a crash: the original's checker counted it as passed
                    (p, code("while True: pass")),
                    (p, doc(solution="no program here")),
                    (p, code("def broken(:"))],
                   require_format=True, code_timeout_s=1.0)
    assert checks[0].ok and checks[0].reason == "passed"
    assert [c.ok for c in checks[1:]] == [False] * 5
    assert checks[1].reason.startswith("tests_failed: wrong_answer")
    assert checks[2].reason.startswith("tests_failed: runtime_error")
    assert checks[3].reason.startswith("tests_failed: timeout")
    assert checks[4].reason == "no_code"
    assert checks[5].reason.startswith("tests_failed: compile_error")


def test_user_prompts_are_the_sky_t1_ones():
    assert user_prompt(math("What is 2+2?", "4")) == "Return your final response within \\boxed{}. What is 2+2?"
    assert MATH_USER.format(problem="x") == "Return your final response within \\boxed{}. x"
    stdin = Problem.make(domain="code", question="Add.", tests=ADD, source="t")
    assert user_prompt(stdin) == CODE_STDIN.format(problem="Add.")
    call = Problem.make(domain="code", question="Add.", tests={**ADD, "fn_name": "add"}, source="t",
                        starter_code="def add(a, b):\n")
    assert user_prompt(call) == CODE_CALL.format(problem="Add.") + "\ndef add(a, b):\n"


def test_render_fills_only_its_slots_once():
    template = load_prompt("rewrite", "v1")
    out = render(template, problem="Find {x} with \\boxed{} and {trace}", trace="T {problem}")
    assert "Find {x} with \\boxed{} and {trace}" in out and "T {problem}" in out
    assert "{the reasoning, as steps separated by blank lines}" in out  # the template's own braces stay
    with pytest.raises(FileNotFoundError, match="versions: v1"):
        load_prompt("rewrite", "v9")
    with pytest.raises(ValueError):
        load_prompt("rewrite", "../../etc/passwd")


def test_append_log_drops_a_torn_tail_and_keeps_appending_on_a_new_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b": [1, 2')
    log = AppendLog(path)
    assert log.records == [{"a": 1}, {"a": 2}]
    log.append({"a": 4})
    log.close()
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"a": 1}, {"a": 2}, {"a": 4}]
    path.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(ValueError, match=r"log\.jsonl:2: expected a JSON object"):
        AppendLog(path)


def test_append_log_lines_stay_whole_under_threads(tmp_path):
    log = AppendLog(tmp_path / "log.jsonl")
    text = "x" * 5000

    def write(t: int) -> None:
        for i in range(200):
            log.append({"t": t, "i": i, "text": text})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert len(AppendLog(tmp_path / "log.jsonl").records) == 800


def test_request_hash_covers_every_setting_and_the_cache_keeps_the_first_answer(tmp_path):
    msgs = [{"role": "user", "content": "hi"}]
    base = request_hash("m", msgs, SamplingConfig(), "k")
    assert base == request_hash("m", [dict(m) for m in msgs], SamplingConfig(), "k")
    changed = [request_hash("m2", msgs, SamplingConfig(), "k"),
               request_hash("m", [{"role": "user", "content": "hi!"}], SamplingConfig(), "k"),
               request_hash("m", msgs, SamplingConfig(temperature=0.7), "k"),
               request_hash("m", msgs, SamplingConfig(n=2), "k"),
               request_hash("m", msgs, SamplingConfig(max_tokens=5), "k"),
               request_hash("m", msgs, SamplingConfig(seed=1), "k"),
               request_hash("m", msgs, SamplingConfig(), "k2")]
    assert len({base, *changed}) == 8
    cache = RequestCache(tmp_path / "c.jsonl")
    cache.put(base, "teacher", "k", Generation(texts=["a"]), 0.0)
    cache.put(base, "teacher", "k", Generation(texts=["b"]), 0.0)
    with pytest.raises(ValueError, match="not cached"):
        cache.put("h2", "teacher", "k2", Generation(texts=[], error="HTTP 400"), None)
    cache.close()
    again = RequestCache(tmp_path / "c.jsonl")
    assert len(again) == 1 and again.get(base).texts == ["a"]
