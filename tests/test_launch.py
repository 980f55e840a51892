"""The launchers in launch/: each one's command, checked by running it with the cluster tools replaced by
stand-ins, and the SLURM one trained for real (two CPU ranks, c10d rendezvous) the way a cluster runs it."""

import json
import os
import stat
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, subprocess_env

LAUNCH = REPO / "launch"
TINY = ["device=cpu", "data.max_samples=8", "data.max_seq_len=1200", "train.global_batch_size=4",
        "train.max_steps=2", "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64"]


def stand_in(bin_dir, name, body):
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize("script", sorted(p.name for p in LAUNCH.glob("*.sh")))
def test_every_launcher_is_valid_bash(script):
    proc = subprocess.run(["bash", "-n", str(LAUNCH / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def slurm_command(tmp_path, env_extra, args):
    """launch/slurm.sh with srun and torchrun replaced by stand-ins that print their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in(bin_dir, "scontrol", 'echo node-a; echo node-b')
    stand_in(bin_dir, "srun", 'shift; exec "$@"')  # drop --kill-on-bad-exit=1
    stand_in(bin_dir, "torchrun", 'python -c "import json,sys; print(json.dumps(sys.argv[1:]))" "$@"')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NNODES": "2",
           "SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_JOB_ID": "77", **env_extra}
    proc = subprocess.run(["bash", str(LAUNCH / "slurm.sh"), *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_slurm_launcher_rendezvous_on_the_first_node_and_hybrid_sharding(tmp_path):
    argv = slurm_command(tmp_path, {"HYBRID": "1", "RUN_ROOT": "/shared/runs"},
                         ["experiment=sky_t1_32b", "optim.lr=2e-5"])
    flags = dict(zip(argv[:-1], argv[1:]))
    assert flags["--nnodes"] == "2" and flags["--nproc_per_node"] == "8"
    assert flags["--rdzv_endpoint"] == "node-a:29500" and flags["--rdzv_backend"] == "c10d"
    assert flags["--rdzv_id"] == "77"
    assert argv[argv.index("-m") + 1] == "sky_train"
    tail = argv[argv.index("-m") + 2:]
    assert tail == ["hydra.run.dir=/shared/runs/${run_name}", "fsdp.replicate=2", "experiment=sky_t1_32b",
                    "optim.lr=2e-5"]
    # Without HYBRID, parameters are sharded over every rank.
    plain = slurm_command(tmp_path, {}, ["experiment=sky_t1_32b"])
    assert not any(a.startswith("fsdp.replicate") for a in plain)


def test_slurm_launcher_refuses_to_run_outside_slurm(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", str(LAUNCH / "slurm.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "SLURM_NNODES" in proc.stderr


@pytest.mark.slow
def test_slurm_launcher_trains_for_real_with_two_ranks(tmp_path):
    """The real torchrun behind a stand-in srun: one node, two CPU ranks, c10d rendezvous on 127.0.0.1,
    the run folder under RUN_ROOT named by run_name."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in(bin_dir, "scontrol", "echo 127.0.0.1")
    stand_in(bin_dir, "srun", 'shift; exec "$@"')
    stand_in(bin_dir, "torchrun", f'exec {sys.executable} -m torch.distributed.run "$@"')
    env = subprocess_env(PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_NNODES="1", SLURM_JOB_NODELIST="x",
                         SLURM_JOB_ID="5", GPUS_PER_NODE="2", RDZV_PORT="29517", RUN_ROOT=str(tmp_path / "shared"),
                         OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(LAUNCH / "slurm.sh"), "run_name=slurm_try", *TINY], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "shared" / "slurm_try"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert (run_dir / "hf" / "config.json").exists()
    assert "world=2" in proc.stdout


def test_skypilot_task_runs_the_recipe_on_8_h100():
    task = yaml.safe_load((LAUNCH / "sky_t1_32b.sky.yaml").read_text())
    assert task["resources"]["accelerators"] == "H100:8"
    run = task["run"]
    assert "-m sky_train experiment=sky_t1_32b" in run
    for var in ("SKYPILOT_NUM_NODES", "SKYPILOT_NODE_RANK", "SKYPILOT_NUM_GPUS_PER_NODE", "SKYPILOT_NODE_IPS"):
        assert var in run
    assert "/runs" in task["file_mounts"]  # one run folder every node shares, kept after the cluster


def test_local_launcher_uses_every_gpu_by_default(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in(bin_dir, "torchrun", 'python -c "import json,sys; print(json.dumps(sys.argv[1:]))" "$@"')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "NPROC": "8"}
    proc = subprocess.run(["bash", str(LAUNCH / "torchrun_local.sh"), "experiment=sky_t1_32b"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    argv = json.loads(proc.stdout)
    assert argv == ["--standalone", "--nproc_per_node", "8", "-m", "sky_train", "experiment=sky_t1_32b"]
