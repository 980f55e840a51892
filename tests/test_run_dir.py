"""A run folder is never silently mixed up or lost, and checkpoints are written while training goes on.

The reference for every resumed run is the same run done in one go (its losses and its summary). Runs are the
embedded default shrunk to seconds: 8 samples, 4 per step (2 steps per epoch), a 2-layer 32-wide model.
"""

import importlib
import json
import re
import shutil
import subprocess
import sys
import threading

import pytest
from conftest import subprocess_env

from sky_train import to_config, train
from sky_train.checkpoint import CheckpointError, check_checkpoint, list_checkpoints, wait_for_pending_saves
from sky_train.embedded import EMBEDDED_DATA
from sky_train.run_dir import RunDirError

TRAIN = importlib.import_module("sky_train.train")  # the module (sky_train.train is the function)


def cfg(run_dir, **dotted):
    base = {
        "run_dir": str(run_dir), "device": "cpu", "seed": 2,
        "model": {"tiny": {"hidden_size": 32, "intermediate_size": 64}},
        "data": {"max_samples": 8, "max_seq_len": 1200},
        "train": {"global_batch_size": 4, "max_steps": 4, "export_hf": False},
        "optim": {"lr": 3e-3}, "metrics": {"plot": False},
    }
    return to_config(base, **dotted)


class Crash(RuntimeError):
    pass


def crash_before(monkeypatch, step_index):
    """Make the run die as it starts optimiser step `step_index` (0-based), as a killed job would."""
    real = TRAIN.lr_at

    def lr_at(step, *args, **kwargs):
        if step == step_index:
            raise Crash(f"simulated crash before step {step + 1}")
        return real(step, *args, **kwargs)

    monkeypatch.setattr(TRAIN, "lr_at", lr_at)


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def snapshot(run_dir):
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The reference: 4 steps in one go, no checkpoints."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    result = train(cfg(run_dir))
    return run_dir, result


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """The same run with a checkpoint after every step (2 kept), dead as it starts step 4: step_000002 and
    step_000003 are complete, metrics.jsonl holds 3 steps."""
    run_dir = tmp_path_factory.mktemp("crashed") / "run"
    with pytest.MonkeyPatch.context() as mp:
        crash_before(mp, 3)
        with pytest.raises(Crash):
            train(cfg(run_dir, **{"train.save_every": 1, "train.keep_checkpoints": 2}))
    wait_for_pending_saves()  # what interpreter exit does for a dead job
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_000002", "step_000003"]
    assert len(metrics(run_dir)) == 3
    return run_dir


def copy_of(run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


# ---- asynchronous saves ----------------------------------------------------------------------------------


def test_training_goes_on_while_a_checkpoint_is_written(tmp_path, monkeypatch):
    """The write of the step-2 checkpoint is held until step 3 has started: a save that blocked training
    would never see it start (the wait times out), and until the write is done the checkpoint exists only as
    step_000002.tmp, so an interrupted save is never taken for a complete one."""
    from torch.distributed.checkpoint.filesystem import FileSystemWriter

    step3_started = threading.Event()
    seen = {}
    real_write, real_lr_at = FileSystemWriter.write_data, TRAIN.lr_at

    def slow_write(self, plan, planner):
        seen["overlapped"] = step3_started.wait(timeout=60)
        return real_write(self, plan, planner)

    def lr_at(step, *args, **kwargs):
        if step == 2:
            seen["complete_while_writing"] = [p.name for p in list_checkpoints(tmp_path / "run")]
            seen["tmp_while_writing"] = (tmp_path / "run" / "step_000002.tmp").is_dir()
            step3_started.set()
        return real_lr_at(step, *args, **kwargs)

    monkeypatch.setattr(FileSystemWriter, "write_data", slow_write)
    monkeypatch.setattr(TRAIN, "lr_at", lr_at)
    result = train(cfg(tmp_path / "run", **{"train.max_steps": 3, "train.save_every": 2}))
    assert seen == {"overlapped": True, "complete_while_writing": [], "tmp_while_writing": True}
    assert result.steps == 3
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_000002"]  # renamed once written
    assert check_checkpoint(tmp_path / "run" / "step_000002") is None


# ---- resume ----------------------------------------------------------------------------------------------


def test_resume_after_a_crash_gives_the_uninterrupted_run_and_a_whole_run_summary(straight, crashed, tmp_path, capfd):
    run_dir = copy_of(crashed, tmp_path)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 6.1')  # the crash tore the last line
    result = train(cfg(run_dir, **{"train.save_every": 1, "train.keep_checkpoints": 2}))
    assert "dropping a torn last line 4" in capfd.readouterr().err

    ref_dir, ref = straight
    assert result.resumed_from == 3 and len(result.losses) == 1
    assert [r["step"] for r in metrics(run_dir)] == [1, 2, 3, 4]
    assert [r["loss"] for r in metrics(run_dir)] == pytest.approx([r["loss"] for r in metrics(ref_dir)], rel=1e-6)
    summary = json.loads((run_dir / "summary.json").read_text())
    # The whole run, not only the resumed step: tokens and first loss as the run done in one go.
    assert summary["tokens"] == ref.tokens and summary["first_loss"] == pytest.approx(ref.first_loss, rel=1e-6)
    assert summary["last_loss"] == pytest.approx(ref.last_loss, rel=1e-6) and summary["resumed_from"] == 3


def test_a_corrupt_metrics_line_before_the_last_is_an_error_naming_file_and_line(crashed, tmp_path):
    run_dir = copy_of(crashed, tmp_path)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:20]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    before = snapshot(run_dir)
    with pytest.raises(RunDirError, match=r"metrics\.jsonl, line 2: not a metrics record"):
        train(cfg(run_dir))
    assert snapshot(run_dir) == before


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path):
    path.write_bytes(b"\x00garbled" + path.read_bytes()[8:])


CORRUPTIONS = {  # file -> (what is done to it, what the message says)
    "__0_0.distcp": (_truncate, r"__0_0\.distcp is truncated"),
    ".metadata": (_garble, r"\.metadata unreadable"),
    "trainer_state.json": (_truncate, r"trainer_state\.json unreadable \(JSONDecodeError"),
    "rng_rank00000.pt": (_truncate, r"rng_rank00000\.pt unreadable"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_cheap_checks_name_what_is_wrong_with_a_checkpoint(crashed, tmp_path, name):
    run_dir = copy_of(crashed, tmp_path)
    assert check_checkpoint(run_dir / "step_000003") is None
    corrupt, message = CORRUPTIONS[name]
    corrupt(run_dir / "step_000003" / name)
    problem = check_checkpoint(run_dir / "step_000003")
    assert problem is not None and re.search(message, problem), problem


@pytest.mark.parametrize("damage", ["truncated shard", "zeroed shard"])
def test_a_broken_newest_checkpoint_is_named_and_the_previous_one_resumed(straight, crashed, tmp_path, capfd, damage):
    """A truncated shard fails the cheap checks; a zeroed one (same size) fails only when DCP loads it. Either
    way the run names step_000003, resumes from step_000002 and ends as the run done in one go."""
    run_dir = copy_of(crashed, tmp_path)
    shard = run_dir / "step_000003" / "__0_0.distcp"
    if damage == "truncated shard":
        _truncate(shard)
    else:
        shard.write_bytes(bytes(shard.stat().st_size))
    result = train(cfg(run_dir, **{"train.save_every": 1, "train.keep_checkpoints": 2}))
    err = capfd.readouterr().err
    assert "step_000003 cannot be resumed from" in err
    assert ("__0_0.distcp is truncated" if damage == "truncated shard" else "loading failed (rank 0:") in err
    assert result.resumed_from == 2
    ref_dir, ref = straight
    assert [r["loss"] for r in metrics(run_dir)] == pytest.approx([r["loss"] for r in metrics(ref_dir)], rel=1e-6)
    assert json.loads((run_dir / "summary.json").read_text())["tokens"] == ref.tokens


def test_no_usable_checkpoint_is_a_clear_error_naming_each(crashed, tmp_path):
    run_dir = copy_of(crashed, tmp_path)
    _truncate(run_dir / "step_000003" / "__0_0.distcp")
    _garble(run_dir / "step_000002" / ".metadata")
    with pytest.raises(CheckpointError, match=r"(?s)no usable checkpoint.*step_000002: \.metadata unreadable.*"
                                              r"step_000003: __0_0\.distcp is truncated.*train\.resume=false"):
        train(cfg(run_dir))


# ---- the run folder --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-step run on a data file of its own, checkpointed synchronously after step 1."""
    root = tmp_path_factory.mktemp("finished")
    data = root / "data.jsonl"
    data.write_text("".join(EMBEDDED_DATA.read_text().splitlines(keepends=True)[:8]))
    over = {"data.path": str(data), "train.max_steps": 2, "train.save_every": 1, "train.async_save": False}
    result = train(cfg(root / "run", **over))
    return root, over, result


def test_a_finished_run_started_again_returns_its_result_without_training(finished, monkeypatch):
    root, over, first = finished
    before = snapshot(root / "run")
    monkeypatch.setattr(TRAIN, "lr_at", lambda *a, **k: pytest.fail("trained a finished run again"))
    again = train(cfg(root / "run", **over, **{"train.log_every": 5}))  # a key that does not shape the run
    assert (again.steps, again.last_loss, again.tokens) == (first.steps, first.last_loss, first.tokens)
    assert again.losses == []
    assert snapshot(root / "run") == before


@pytest.mark.parametrize("change", ["lr", "data"])
def test_other_settings_stop_naming_the_differences_and_the_ways_out(finished, tmp_path, change):
    root, over, _ = finished
    run_dir = copy_of(root / "run", tmp_path)
    before = snapshot(run_dir)
    if change == "lr":
        new, expected = {**over, "optim.lr": 1e-3, "train.max_steps": 3}, [
            "optim.lr: 0.003 (that run) -> 0.001 (now)", "train.max_steps: 2 (that run) -> 3 (now)"]
    else:
        data = tmp_path / "data.jsonl"
        data.write_text("".join(EMBEDDED_DATA.read_text().splitlines(keepends=True)[8:16]))
        new, expected = {**over, "data.path": str(data)}, [f'data.path: "{over["data.path"]}" (that run) -> "{data}"',
                                                           "data content (sha256 of data.path)"]
    with pytest.raises(RunDirError) as info:
        train(cfg(run_dir, **new))
    message = str(info.value)
    for text in [*expected, "train.overwrite=true", "run_name=", "run_dir=", "config.yaml"]:
        assert text in message, message
    assert snapshot(run_dir) == before  # config.yaml still claims the old settings, nothing else touched


def test_same_file_name_with_new_content_is_another_run(finished, tmp_path):
    root, over, _ = finished
    run_dir = copy_of(root / "run", tmp_path)
    shutil.copy(over["data.path"], tmp_path / "data.jsonl")
    old = json.loads((run_dir / "run.json").read_text())
    old["settings"]["data.path"] = str(tmp_path / "data.jsonl")
    (run_dir / "run.json").write_text(json.dumps(old))
    with open(tmp_path / "data.jsonl", "a") as f:
        f.write(EMBEDDED_DATA.read_text().splitlines(keepends=True)[9])
    with pytest.raises(RunDirError, match=r"data content \(sha256 of data.path\)") as info:
        train(cfg(run_dir, **{**over, "data.path": str(tmp_path / "data.jsonl")}))
    assert "data.path:" not in str(info.value)  # the name is the same; only the content differs


def test_overwrite_replaces_a_finished_run(finished, tmp_path):
    root, over, _ = finished
    run_dir = copy_of(root / "run", tmp_path)
    (run_dir / "notes.txt").write_text("mine")
    result = train(cfg(run_dir, **{**over, "train.max_steps": 1, "train.save_every": 0, "train.overwrite": True}))
    assert len(result.losses) == 1 and [r["step"] for r in metrics(run_dir)] == [1]
    assert list_checkpoints(run_dir) == []  # the old run's checkpoints went with it
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 1
    assert (run_dir / "notes.txt").read_text() == "mine"  # not a run file: left alone


def test_a_failed_start_leaves_the_folder_as_it_was_and_makes_no_folder(finished, tmp_path):
    root, over, _ = finished
    run_dir = copy_of(root / "run", tmp_path)
    before = snapshot(run_dir)
    with pytest.raises(FileNotFoundError):  # found only after the folder's checks passed (overwrite)
        train(cfg(run_dir, **{**over, "model.name_or_path": str(tmp_path / "no_model"), "train.overwrite": True}))
    assert snapshot(run_dir) == before
    with pytest.raises(Exception, match="no_data.jsonl"):
        train(cfg(tmp_path / "new", **{"data.path": str(tmp_path / "no_data.jsonl")}))
    with pytest.raises(FileNotFoundError):
        train(cfg(tmp_path / "new", **{"model.name_or_path": str(tmp_path / "no_model")}))
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_cli_rerun_of_a_finished_run_is_a_no_op_and_other_settings_stop(tmp_path):
    """`python -m sky_train train.max_steps=2` again after a finished run: exit 0 without training;
    with train.max_steps=3: exit 1, the difference named, the run's files untouched."""
    tiny = ["device=cpu", "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64", "data.max_samples=8",
            "data.max_seq_len=1200", "train.global_batch_size=4", "metrics.plot=false"]

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "sky_train", *tiny, *extra], cwd=tmp_path, env=subprocess_env(),
                              capture_output=True, text=True, timeout=600)

    first = run("train.max_steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "runs" / "default"
    before = snapshot(run_dir)
    again = run("train.max_steps=2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "holds this run, finished (2 steps" in again.stdout and "[sky_train] done" not in again.stdout
    other = run("train.max_steps=3")
    assert other.returncode == 1
    assert "train.max_steps: 2 (that run) -> 3 (now)" in other.stdout + other.stderr
    assert snapshot(run_dir) == before


def test_sky_t1_32b_checkpoints_every_25_steps_and_keeps_two():
    cfg32 = to_config({"model": {"name_or_path": "/m"}, "data": {"path": "/d"}}, experiment="sky_t1_32b")
    assert (cfg32.train.save_every, cfg32.train.keep_checkpoints, cfg32.train.async_save) == (25, 2, True)
