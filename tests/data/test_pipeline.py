"""The data pipeline end to end against a scripted teacher server (sky_data.fake_server) on 127.0.0.1.

The fake teacher answers "What is A + B?" like a seeded model: sample i of a request with seed s is
- cut short (finish_reason "length") when (s + i) % 7 == 0,
- else right (\\boxed{A+B}) when (s + i) % 3 != 0, and wrong (\\boxed{A+B+1}) otherwise,
so every test can work out by hand, from `request_seed`, which samples the pipeline must keep and why it
rejects the others. The rewriter (the same server, recognised by the rewrite prompt) wraps a plain trace in
the four markers, so the rewrite stage is tested for real too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import subprocess_env, write_jsonl

from sky_data.backends import request_seed
from sky_data.fake_server import completion, serve
from sky_data.pipeline import parse_rating, run_pipeline
from sky_data.prompts import MATH_USER, system_prompt
from sky_data.schema import problem_id
from sky_data.select import format_error

SUMS = [(12, 30), (7, 8), (25, 17), (40, 2), (9, 9), (33, 44), (61, 5), (18, 27), (50, 50), (3, 96)]
QUESTION = "What is {a} + {b}?"


def marked(thought: str, solution: str) -> str:
    return (f"<|begin_of_thought|>\n\n{thought}\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n{solution}"
            f"\n\n<|end_of_solution|>")


def fate(seed: int) -> str:
    """What the fake teacher's sample with this seed is: "truncated", "right" or "wrong"."""
    if seed % 7 == 0:
        return "truncated"
    return "right" if seed % 3 else "wrong"


class Teacher:
    """The fake server's behaviour: a seeded adder that writes markers (or plain text, `plain=True`)."""

    def __init__(self, plain: bool = False) -> None:
        self.plain = plain

    def __call__(self, body: dict, attempt: int):
        user = body["messages"][-1]["content"]
        if user.startswith("You reformat"):
            trace = user.split("The solution to rewrite:\n", 1)[1]
            answer = re.findall(r"\\boxed\{(\d+)\}", trace)[-1]
            text = marked(trace.strip(), f"The sum is \\boxed{{{answer}}}.")
            return completion(body, [{"index": 0, "message": {"content": text}, "finish_reason": "stop",
                                      "token_ids": [1] * 50}], usage={"prompt_tokens": 100, "completion_tokens": 50})
        m = re.search(r"What is (\d+) \+ (\d+)\?", user)
        a, b = int(m.group(1)), int(m.group(2))
        choices = []
        for i in range(body.get("n", 1)):
            kind = fate(body["seed"] + i)
            total = a + b if kind != "wrong" else a + b + 1
            thought = f"Ones first, then tens: {a} + {b}."
            text = (f"{thought} So the answer is \\boxed{{{total}}}." if self.plain
                    else marked(thought, f"\\boxed{{{total}}}"))
            choices.append({"index": i, "message": {"content": text},
                            "finish_reason": "length" if kind == "truncated" else "stop", "token_ids": [1] * 30})
        return completion(body, choices, usage={"prompt_tokens": 40, "completion_tokens": 30 * len(choices)})


def pid(a: int, b: int) -> str:
    return problem_id("math", QUESTION.format(a=a, b=b), str(a + b), None, "")


def expected(sums: list[tuple[int, int]], n: int, per_problem: int = 1) -> dict[str, list[str]]:
    """problem id -> the fate of each of its n samples, with "kept"/"surplus" for the right ones."""
    out = {}
    for a, b in sums:
        base = request_seed(0, f"generate:{pid(a, b)}")
        fates, kept = [], 0
        for i in range(n):
            f = fate(base + i)
            if f == "right":
                f = "kept" if kept < per_problem else "surplus"
                kept += f == "kept"
            fates.append(f)
        out[pid(a, b)] = fates
    return out


@pytest.fixture
def problems_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "sums.jsonl", [{"problem": QUESTION.format(a=a, b=b), "answer": str(a + b)}
                                                for a, b in SUMS])


@pytest.fixture
def teacher():
    with serve() as fake:
        fake.behave = Teacher()
        yield fake


def config(problems: Path, fake, out: Path, **over) -> dict:
    cfg = {"out_dir": str(out), "progress": False, "source": {"name": "local", "path": str(problems)},
           "teacher": {"model": "fake-model", "base_url": fake.base_url, "n": 4, "concurrency": 4,
                       "max_retries": 3, "extra": {"backoff_s": 0.01}},
           "rewrite": {"enabled": False}, "dedup": {"near": False}}
    for dotted, value in over.items():
        node = cfg
        *path, last = dotted.split(".")
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    return cfg


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_keeps_exactly_the_right_samples_and_says_why_it_rejects_the_others(problems_file, teacher, tmp_path):
    report = run_pipeline(config(problems_file, teacher, tmp_path / "out", **{"select.per_problem": 2}))
    want = expected(SUMS, n=4, per_problem=2)
    samples = read_jsonl(tmp_path / "out" / "samples.jsonl")
    got: dict[str, list[str]] = {}
    for s in samples:
        f = "kept" if s["kept"] else {"truncated": "truncated", "surplus": "surplus"}.get(
            s["reason"], "wrong" if s["reason"].startswith("wrong_answer") else s["reason"])
        got.setdefault(s["problem_id"], []).append(f)
    assert got == want
    n_kept = sum(f.count("kept") for f in want.values())
    assert n_kept > 0 and sum(f.count("wrong") for f in want.values()) > 0  # the seeds exercise both branches
    assert report["sft_records"] == n_kept
    t = report["totals"]
    assert t["problems"] == 10 and t["samples"] == 40 and t["kept"] == n_kept
    assert t["teacher_requests"] == 10 and t.get("teacher_from_cache", 0) == 0
    assert t["rejected:wrong_answer"] == sum(f.count("wrong") for f in want.values())
    assert t["rejected:truncated"] == sum(f.count("truncated") for f in want.values())
    assert t["teacher_prompt_tokens"] == 10 * 40 and t["teacher_completion_tokens"] == 10 * 4 * 30

    # sft.jsonl is Sky-T1's format, with the prompt the teacher was asked, and every record verified
    records = read_jsonl(tmp_path / "out" / "sft.jsonl")
    assert len(records) == n_kept
    for rec in records:
        assert set(rec) == {"system", "conversations"} and rec["system"] == system_prompt("sky_t1")
        user, assistant = rec["conversations"]
        assert user["from"] == "user" and assistant["from"] == "assistant"
        a, b = map(int, re.search(r"What is (\d+) \+ (\d+)\?", user["value"]).groups())
        assert user["value"] == MATH_USER.format(problem=QUESTION.format(a=a, b=b))
        assert format_error(assistant["value"]) is None and f"\\boxed{{{a + b}}}" in assistant["value"]
    # and the teacher was asked with the Sky-T1 system prompt, the recipe's sampling and per-problem seeds
    body = teacher.calls[0]
    assert body["messages"][0] == {"role": "system", "content": system_prompt("sky_t1")}
    assert body["temperature"] == 0.7 and body["max_tokens"] == 16384 and body["n"] == 4
    assert sorted(c["seed"] for c in teacher.calls) == sorted(request_seed(0, f"generate:{pid(a, b)}")
                                                               for a, b in SUMS)


def test_a_second_run_sends_nothing_and_writes_the_same_files(problems_file, teacher, tmp_path):
    cfg = config(problems_file, teacher, tmp_path / "out")
    first = run_pipeline(cfg)
    sft = (tmp_path / "out" / "sft.jsonl").read_bytes()
    calls = len(teacher.calls)
    second = run_pipeline(cfg)
    assert len(teacher.calls) == calls
    assert second["totals"]["teacher_from_cache"] == 10 and "teacher_requests" not in second["totals"]
    assert (tmp_path / "out" / "sft.jsonl").read_bytes() == sft and second["sft_records"] == first["sft_records"]
    # a changed setting is a new request: only then is the teacher asked again
    run_pipeline({**cfg, "teacher": {**cfg["teacher"], "temperature": 0.6}})
    assert len(teacher.calls) == calls + 10


def test_rewrite_puts_plain_traces_in_the_format_and_prefilter_saves_the_wrong_ones(problems_file, tmp_path):
    with serve() as fake:
        fake.behave = Teacher(plain=True)
        base = config(problems_file, fake, tmp_path / "raw")
        # without the rewrite, plain traces lack the markers and nothing is kept
        report = run_pipeline(base)
        assert report["sft_records"] == 0 and report["totals"]["rejected:missing_markers"] > 0
        calls = len(fake.calls)
        cfg = config(problems_file, fake, tmp_path / "rw", **{
            "rewrite.enabled": True, "rewrite.model": "fake-model", "rewrite.base_url": fake.base_url,
            "rewrite.price_input": 0.15, "rewrite.price_output": 0.60, "rewrite.extra": {"backoff_s": 0.01}})
        report = run_pipeline(cfg)
    want = expected(SUMS, n=4)
    right = sum(f.count("kept") + f.count("surplus") for f in want.values())
    wrong = sum(f.count("wrong") for f in want.values())
    assert report["sft_records"] == sum(f.count("kept") for f in want.values())
    # the rewriter saw only samples whose answer was already right: the wrong ones cost nothing
    rewrites = [c for c in fake.calls[calls:] if c["messages"][-1]["content"].startswith("You reformat")]
    assert len(rewrites) == right and report["totals"]["rejected:prefilter_wrong_answer"] == wrong
    assert rewrites[0]["model"] == "fake-model" and rewrites[0]["temperature"] == 0.0
    # money: 100 prompt + 50 completion tokens per rewrite at $0.15 / $0.60 per million
    assert report["money"]["this_run_usd"] == pytest.approx(right * (100 * 0.15 + 50 * 0.60) / 1e6)
    for rec in read_jsonl(tmp_path / "rw" / "sft.jsonl"):
        assert format_error(rec["conversations"][1]["value"]) is None


def test_server_faults_are_retried_and_a_refused_request_is_recorded_not_fatal(problems_file, teacher, tmp_path):
    bad = QUESTION.format(a=9, b=9)
    teacher_ok = Teacher()

    def flaky(body: dict, attempt: int):
        user = body["messages"][-1]["content"]
        if bad in user:
            return 400, {"error": {"message": "prompt too long"}}, {}
        if attempt == 1:
            return [(429, {"error": {"message": "slow"}}, {"Retry-After": "0"}), (500, b"oops", {}),
                    (200, b"{not json", {})][len(user) % 3]
        return teacher_ok(body, attempt)

    teacher.behave = flaky
    report = run_pipeline(config(problems_file, teacher, tmp_path / "out"))
    t = report["totals"]
    assert t["teacher_errors"] == 1 and t["teacher_requests"] == 10
    assert report["sources"]["local:sums.jsonl"]["samples"] == 36  # 9 problems answered, 4 samples each
    errors = read_jsonl(tmp_path / "out" / "cache" / "errors.jsonl")
    assert len(errors) == 1 and "HTTP 400" in errors[0]["error"] and errors[0]["key"] == f"generate:{pid(9, 9)}"


def test_a_server_that_stays_down_stops_the_run_and_the_next_run_picks_up(problems_file, teacher, tmp_path):
    down = {QUESTION.format(a=a, b=b) for a, b in SUMS[5:]}
    ok = Teacher()
    teacher.behave = lambda body, attempt: ((503, b"down", {}) if any(q in body["messages"][-1]["content"]
                                                                      for q in down) else ok(body, attempt))
    cfg = config(problems_file, teacher, tmp_path / "out", **{"teacher.concurrency": 1})
    with pytest.raises(RuntimeError, match=r"gave up after 4 attempts.*HTTP 503"):
        run_pipeline(cfg)
    answered = read_jsonl(tmp_path / "out" / "cache" / "requests.jsonl")
    assert 0 < len(answered) <= 5
    teacher.behave = ok
    report = run_pipeline(cfg)
    assert report["totals"]["teacher_from_cache"] == len(answered)
    assert report["totals"]["teacher_requests"] == 10 - len(answered)
    assert len(read_jsonl(tmp_path / "out" / "cache" / "requests.jsonl")) == 10


def test_sigkill_mid_run_then_rerun_pays_once_and_writes_what_an_uninterrupted_run_writes(tmp_path):
    sums = [(a, b) for a in range(10, 70, 3) for b in (1, 2, 4)][:60]
    problems = write_jsonl(tmp_path / "p.jsonl", [{"problem": QUESTION.format(a=a, b=b), "answer": str(a + b)}
                                                  for a, b in sums])
    with serve() as fake:
        fake.behave = Teacher()
        fake.delay_s = 0.05
        # the contract keys, as a user types them
        args = [sys.executable, "-m", "sky_data", "source=local", f"source.path={problems}", "teacher.backend=openai",
                "teacher.model=fake-model", f"teacher.base_url={fake.base_url}", "teacher.n=2", "teacher.max_tokens=64",
                "teacher.temperature=0.5", "teacher.concurrency=4", "rewrite.enabled=false", "select.per_problem=2",
                "dedup.near=false"]
        cache = tmp_path / "killed" / "cache" / "requests.jsonl"
        proc = subprocess.Popen(args + [f"out_dir={tmp_path / 'killed'}"], env=subprocess_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if cache.exists() and cache.read_bytes().count(b"\n") >= 20:
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read().decode()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        saved = set()
        for line in cache.read_text().splitlines():
            try:
                saved.add(json.loads(line)["key"])
            except json.JSONDecodeError:
                pass  # a last line the kill cut short: not an answer the run kept
        assert 20 <= len(saved) < 60
        attempts_at_kill = dict(fake.attempts)

        r = subprocess.run(args + [f"out_dir={tmp_path / 'killed'}"], env=subprocess_env(), capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "SFT records" in r.stdout  # the human summary
        again = dict(fake.attempts)
        assert fake.max_in_flight <= 4
        assert {(c["n"], c["max_tokens"], c["temperature"]) for c in fake.calls} == {(2, 64, 0.5)}
        # the reference: the same run, never stopped (in this process)
        run_pipeline(config(problems, fake, tmp_path / "whole", **{
            "teacher.n": 2, "teacher.max_tokens": 64, "teacher.temperature": 0.5, "select.per_problem": 2,
            "teacher.extra": {}}))

    # a request answered and saved before the kill was never sent again; at most the 4 in flight were resent
    question = {f"generate:{pid(a, b)}": QUESTION.format(a=a, b=b) for a, b in sums}
    prompts = {k: MATH_USER.format(problem=q) for k, q in question.items()}
    for key in saved:
        assert again[prompts[key]] == attempts_at_kill[prompts[key]] == 1, key
    assert all(again[p] <= 2 for p in prompts.values())
    assert sum(again[p] == 2 for p in prompts.values()) <= 4
    # no record twice, and the same output as a run never stopped
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    lines = read_jsonl(killed / "cache" / "requests.jsonl")
    assert len(lines) == len({ln["hash"] for ln in lines}) == 60
    for name in ("sft.jsonl", "samples.jsonl", "problems.jsonl"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    assert read_json_totals(killed)["teacher_from_cache"] == len(saved)


def read_json_totals(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())["totals"]


def test_a_torn_last_cache_line_is_dropped_and_damage_elsewhere_is_an_error(problems_file, teacher, tmp_path):
    cfg = config(problems_file, teacher, tmp_path / "out")
    run_pipeline(cfg)
    cache = tmp_path / "out" / "cache" / "requests.jsonl"
    lines = cache.read_text().splitlines(keepends=True)
    cache.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a write cut short by a kill
    calls = len(teacher.calls)
    report = run_pipeline(cfg)
    assert len(teacher.calls) == calls + 1 and report["totals"]["teacher_from_cache"] == 9
    lines = cache.read_text().splitlines(keepends=True)
    cache.write_text(lines[0] + "garbage\n" + "".join(lines[1:]))
    with pytest.raises(ValueError, match=r"requests\.jsonl:2: not valid JSON"):
        run_pipeline(cfg)


def test_duplicates_and_benchmark_problems_never_reach_the_teacher(teacher, tmp_path):
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (shared / "math500" / "test.jsonl").is_file():
        pytest.skip(f"no public benchmark data at {shared} (CI has ../shared)")
    first = json.loads((shared / "math500" / "test.jsonl").read_text().splitlines()[0])
    recs = [{"problem": QUESTION.format(a=1, b=2), "answer": "3"},
            {"problem": "  what is 1 + 2?  ", "answer": "3"},  # the same question, reformatted
            {"problem": first["problem"], "answer": first["answer"]},  # a MATH500 test problem
            {"problem": QUESTION.format(a=4, b=5), "answer": "9"}]
    problems = write_jsonl(tmp_path / "p.jsonl", recs)
    report = run_pipeline(config(problems, teacher, tmp_path / "out", **{"dedup.benchmarks_dir": str(shared)}))
    assert len(teacher.calls) == 2 and report["problems_after_filters"] == 2
    dropped = read_jsonl(tmp_path / "out" / "dedup_dropped.jsonl")
    assert sorted(d["reason"] for d in dropped) == ["contaminated", "duplicate"]
    assert any(d["match"] == f"math500:{first['unique_id']}" for d in dropped)


def test_difficulty_filter_keeps_the_configured_range(problems_file, teacher, tmp_path):
    ok = Teacher()

    def rater(body: dict, attempt: int):
        user = body["messages"][-1]["content"]
        if user.startswith("Rate how difficult"):
            a = int(re.search(r"What is (\d+) \+", user).group(1))
            return completion(body, [{"index": 0, "message": {"content": f"Rating: {a % 10 + 1}"},
                                      "finish_reason": "stop"}])
        return ok(body, attempt)

    teacher.behave = rater
    cfg = config(problems_file, teacher, tmp_path / "out", **{
        "difficulty.enabled": True, "difficulty.model": "fake-model", "difficulty.base_url": teacher.base_url,
        "difficulty.keep": {"local:sums.jsonl": [3, 8]}, "difficulty.extra": {"backoff_s": 0.01}})
    report = run_pipeline(cfg)
    keep = [(a, b) for a, b in SUMS if 3 <= a % 10 + 1 <= 8]
    assert report["problems_after_filters"] == len(keep)
    assert report["totals"]["dropped_difficulty"] == len(SUMS) - len(keep)
    asked = {int(re.search(r"What is (\d+) \+", c["messages"][-1]["content"]).group(1))
             for c in teacher.calls if c["n"] == 4}
    assert asked == {a for a, _ in keep}


@pytest.mark.parametrize("reply, rating", [("7", 7.0), ("Rating: 7/10", 7.0), ("**10**", 10.0), ("8.5", 8.5),
                                           ("none", None), ("11", None), ("0", None)])
def test_parse_rating(reply, rating):
    assert parse_rating(reply) == rating


def test_export_is_what_sky_train_reads(problems_file, teacher, tmp_path, tokenizer):
    from sky_train.data import build_samples, load_conversations

    run_pipeline(config(problems_file, teacher, tmp_path / "out"))
    convs = load_conversations(tmp_path / "out" / "sft.jsonl")
    assert convs and all([m["role"] for m in c.messages] == ["system", "user", "assistant"] for c in convs)
    samples, report = build_samples(convs, tokenizer, max_seq_len=4096)
    assert len(samples) == len(convs)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="source.path"):
        run_pipeline({"source": {"name": "local"}, "teacher": {"model": "m"}})
    with pytest.raises(ValueError, match="teacher.model"):
        run_pipeline({"source": {"path": "x.jsonl"}})
    with pytest.raises(ValueError, match="select.per_problem=3"):
        run_pipeline({"source": {"path": "x.jsonl"}, "teacher": {"model": "m", "n": 2}, "select": {"per_problem": 3}})


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "conf" / "sky_data"
                                                         / "source").glob("*.yaml")))
def test_every_source_config_composes_and_its_parts_are_valid(name):
    from sky_data.config import default_config, to_config
    from sky_data.sources import SOURCES, part_cfg

    overrides = [f"source={name}", "teacher.model=m"] + (["source.path=x.jsonl"] if name == "local" else [])
    cfg = to_config(default_config(overrides))
    assert cfg.source.name in set(SOURCES) | {"mix"}
    for i, part in enumerate(cfg.source.parts):
        assert part_cfg(i, part).name in SOURCES


def test_a_transformers_teacher_samples_what_plain_generate_does(exported_model, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = write_jsonl(tmp_path / "p.jsonl", [{"problem": QUESTION.format(a=a, b=b), "answer": str(a + b)}
                                              for a, b in SUMS[:2]])
    report = run_pipeline({"out_dir": str(tmp_path / "out"), "progress": False, "source": {"path": str(path)},
                           "rewrite": {"enabled": False},
                           "teacher": {"backend": "transformers", "model": str(exported_model), "n": 1,
                                       "temperature": 0.0, "max_tokens": 8, "system_prompt": None}})
    assert report["totals"]["teacher_requests"] == 2 and report["totals"]["samples"] == 2
    tok = AutoTokenizer.from_pretrained(exported_model)
    model = AutoModelForCausalLM.from_pretrained(exported_model, dtype=torch.float32)
    got = {s["problem_id"]: s["teacher"] for s in read_jsonl(tmp_path / "out" / "samples.jsonl")}
    for a, b in SUMS[:2]:
        prompt = tok.apply_chat_template([{"role": "user", "content": MATH_USER.format(problem=QUESTION.format(
            a=a, b=b))}], add_generation_prompt=True, tokenize=False)
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
        assert got[pid(a, b)] == tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
