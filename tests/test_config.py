"""Hydra composition: every experiment composes and trains a step with a tiny override; sweeps and
run directories are deterministic."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env
from hydra import compose, initialize_config_dir

from sky_train import to_config, train
from sky_train.config import SkyTrainConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# What turns any experiment into a seconds-long CPU run.
TINY = ["model=tiny", "data=embedded", "fsdp=cpu", "data.max_samples=8", "data.max_seq_len=1200",
        "train.max_steps=1", "train.global_batch_size=4", "train.export_hf=false", "device=cpu",
        "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64"]


def composed(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def test_default_config_is_the_embedded_cpu_run():
    cfg = to_config(composed(["run_dir=x"]))
    assert isinstance(cfg, SkyTrainConfig)
    assert cfg.model.name_or_path is None and cfg.data.path is None and cfg.fsdp.mixed_precision == "fp32"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_trains_with_a_tiny_override(tmp_path, name):
    full = to_config(composed([f"experiment={name}", "run_dir=x", "model.name_or_path=/m", "data.path=/d"]))
    assert full.run_name == name
    cfg = to_config(composed([f"experiment={name}", f"run_dir={tmp_path}", *TINY]))
    result = train(cfg)
    assert result.steps == 1 and result.first_loss > 0


def test_sky_t1_32b_states_the_original_recipe():
    cfg = to_config(composed(["experiment=sky_t1_32b", "run_dir=x", "model.name_or_path=/m", "data.path=/d"]))
    assert (cfg.optim.lr, cfg.train.epochs, cfg.train.global_batch_size, cfg.data.max_seq_len) == (1e-5, 3, 96, 16384)
    assert (cfg.optim.warmup_ratio, cfg.optim.weight_decay, cfg.optim.max_grad_norm) == (0.1, 0.0, 1.0)
    assert (cfg.fsdp.mixed_precision, cfg.fsdp.cpu_offload, cfg.fsdp.activation_checkpointing) == ("bf16", True, True)
    assert cfg.train.loss_weighting == "sample"  # HF Trainer's mean of per-sample means, micro-batch 1
    assert cfg.fsdp.sync_every_micro_batch  # unsharded gradients between micro-batches would be 131 GB per GPU
    assert cfg.train.save_every > 0 and cfg.train.async_save  # a 19-hour job saves, in the background


def test_bad_values_fail_at_composition():
    with pytest.raises(ValueError, match="fsdp.mixed_precision"):
        to_config(composed(["run_dir=x", "fsdp.mixed_precision=fp8"]))
    with pytest.raises(Exception, match="nonexistent"):
        to_config(composed(["run_dir=x", "+train.nonexistent=1"]))


def test_cpu_offload_on_cpu_is_a_clear_error(tmp_path):
    cfg = to_config(composed([f"run_dir={tmp_path}", *TINY, "fsdp.cpu_offload=true"]))
    with pytest.raises(ValueError, match="fsdp.cpu_offload=true needs CUDA"):
        train(cfg)


@pytest.mark.slow
def test_multirun_sweep_writes_one_deterministic_run_dir_per_point(tmp_path):
    cmd = [sys.executable, "-m", "sky_train", "-m", "optim.lr=1e-3,2e-3", "run_name=sw", *TINY]
    proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One folder per point, named by the job's overrides (the same on every torchrun rank).
    # (.token_cache beside them: the tokenized data, shared by the points)
    points = sorted(p for p in (tmp_path / "runs" / "sw_sweep").iterdir() if p.is_dir() and p.name[0] != ".")
    assert len(points) == 2, points
    lrs = {}
    for point in points:
        swept = dict(kv.split("=", 1) for kv in point.name.split(","))
        assert "run_name" not in swept  # run_name/run_dir name the sweep, not the point
        lrs[float(swept["optim.lr"])] = json.loads((point / "metrics.jsonl").read_text().splitlines()[0])["lr"]
    assert lrs[2e-3] == pytest.approx(2 * lrs[1e-3])


def test_python_api_starts_from_the_command_line_defaults():
    """to_config({...}) from Python and `python -m sky_train ...` give the same run for the same overrides."""
    from dataclasses import asdict

    api = to_config({"optim": {"lr": 1e-3}, "train": {"max_steps": 3}})
    cli = to_config(composed(["optim.lr=1e-3", "train.max_steps=3", "run_dir=runs/default"]))
    assert asdict(api) == asdict(cli)
    assert api.run_dir == "runs/default" and api.fsdp.mixed_precision == "fp32" and api.data.max_seq_len == 2048
    exp = to_config({"model": {"name_or_path": "/m"}, "data": {"path": "/d"}}, experiment="sky_t1_32b")
    exp_cli = to_config(composed(["experiment=sky_t1_32b", "model.name_or_path=/m", "data.path=/d",
                                  "run_dir=runs/sky_t1_32b"]))
    assert asdict(exp) == asdict(exp_cli)


def test_threads_per_rank_share_the_node():
    from sky_train.dist import cpu_threads_per_rank

    assert cpu_threads_per_rank(None, 8, 128) == 16  # 8 ranks on a 128-core host: 16 threads each
    assert cpu_threads_per_rank(None, 1, 2) == 2
    assert cpu_threads_per_rank(None, 4, 2) == 1
    assert cpu_threads_per_rank(3, 8, 128) == 3  # train.cpu_threads wins
