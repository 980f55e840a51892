"""The run folder: may this start use it, and how (start, resume, or nothing to do)?

A run folder holds one run: `config.yaml` (its resolved config), `run.json` (the fingerprint of the settings
that shape it), `metrics.jsonl`, checkpoints `step_NNNNNN/`, and once finished `summary.json` and `hf/`.
Rank 0 reads the folder and decides (`plan_run`), every rank follows that decision:

- new or empty folder: start;
- the same settings, unfinished: resume from its newest checkpoint (start over when it has none);
- the same settings, finished: nothing to do, its summary is the result;
- other settings: stop, naming the differences and the ways out (resuming would claim one run's
  checkpoint for another's settings; a finished run is never replaced unless asked for);
- `train.overwrite=true`: its run files are cleared and the run starts over.

Nothing is written here until `claim_run_dir`, which train() calls once the data and the model have been
found: a start that fails leaves the folder as it was, and makes no folder that holds only a config.yaml.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist
from omegaconf import OmegaConf

from sky_train.checkpoint import list_checkpoints, wait_for_pending_saves
from sky_train.config import SkyTrainConfig
from sky_train.token_cache import data_fingerprint

RUN_JSON = "run.json"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
# What a run writes into its folder (cleared by train.overwrite=true); anything else there is left alone.
RUN_FILES = ("config.yaml", RUN_JSON, METRICS, METRICS + ".tmp", SUMMARY, "hf", "hf.tmp", "loss.png", "wandb")
_CHECKPOINT_DIR = re.compile(r"^step_\d{6,}(\.tmp)?$")
# Keys that say how a run is executed, logged or saved, not what it computes: they may change between a run
# and its resume (fewer GPUs, activation checkpointing after an OOM, another save interval). Packing,
# micro-batch size and world size do not change the loss (loss.py); the kernels change only rounding.
NOT_SHAPING = (
    "run_name", "run_dir", "device",
    "train.resume", "train.overwrite", "train.log_every", "train.save_every", "train.keep_checkpoints",
    "train.async_save", "train.export_hf", "train.cpu_threads", "train.loss_chunk_tokens", "train.micro_batch_size",
    "data.cache_dir", "data.packing", "data.group_by_length", "model.attn_implementation", "optim.fused",
    "fsdp.activation_checkpointing", "fsdp.cpu_offload", "fsdp.reshard_after_forward",
    "fsdp.sync_every_micro_batch", "fsdp.replicate", "metrics",
)


class RunDirError(RuntimeError):
    """The run folder cannot be used as asked; raised on every rank with the same message."""


@dataclass
class RunPlan:
    action: str  # "start", "resume" (from a checkpoint) or "finished" (nothing to do)
    clear: bool  # remove the folder's previous run files before starting
    fingerprint: dict[str, Any]  # what run.json will hold
    summary: dict[str, Any] | None = None  # the finished run's summary.json


def shaping_settings(cfg: SkyTrainConfig) -> dict[str, Any]:
    """The resolved config as dotted keys, less the keys in NOT_SHAPING."""
    flat = _flatten(OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True))  # type: ignore[arg-type]
    return {k: v for k, v in flat.items() if not any(k == n or k.startswith(n + ".") for n in NOT_SHAPING)}


def run_fingerprint(cfg: SkyTrainConfig) -> dict[str, Any]:
    """What makes two starts the same run: the shaping settings and the data's content (sha256)."""
    return {"settings": shaping_settings(cfg), "data_sha256": data_fingerprint(cfg.data.path, cfg.data.split)}


def plan_run(run_dir: Path, cfg: SkyTrainConfig) -> RunPlan:
    """Rank 0 decides what this start does with run_dir and broadcasts it. Collective; a refusal (or a data
    file that cannot be read) raises the same exception on every rank, so all stop or all go on."""
    decision: RunPlan | BaseException
    if dist.get_rank() == 0:
        try:
            decision = _decide(run_dir, cfg)
        except Exception as e:  # noqa: BLE001 (re-raised on every rank below)
            decision = e
    box: list[Any] = [decision if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def _decide(run_dir: Path, cfg: SkyTrainConfig) -> RunPlan:
    fingerprint = run_fingerprint(cfg)
    present = run_files(run_dir)
    if not present:
        return RunPlan("start", False, fingerprint)
    if cfg.train.overwrite:
        _note(f"train.overwrite=true: the run in {run_dir} is replaced ({', '.join(p.name for p in present)})")
        return RunPlan("start", True, fingerprint)
    holds_run = any(p.name in (METRICS, SUMMARY, "hf") or p.name.startswith("step_") for p in present)
    if not holds_run:  # a start that never logged a step: nothing to lose
        return RunPlan("start", True, fingerprint)
    old = _read_json(run_dir / RUN_JSON) if (run_dir / RUN_JSON).exists() else None
    if old is None:
        raise RunDirError(
            f"{run_dir} holds a run without {RUN_JSON} (made by an older sky_train), so its settings cannot be "
            f"checked against these.\n{_ways_out(run_dir, None)}"
        )
    diffs = differences(old, fingerprint)
    if diffs:
        lines = "".join(f"  {key}: {a} (that run) -> {b} (now)\n" for key, a, b in diffs)
        raise RunDirError(
            f"{run_dir} holds a run with other settings (its checkpoints and metrics belong to those):\n{lines}"
            f"{_ways_out(run_dir, [key for key, _, _ in diffs])}"
        )
    if (run_dir / SUMMARY).exists():
        return RunPlan("finished", False, fingerprint, summary=_read_json(run_dir / SUMMARY))
    read_metrics(run_dir / METRICS, quiet=True)  # a corrupt line in the middle stops the start here
    if cfg.train.resume and list_checkpoints(run_dir):
        return RunPlan("resume", False, fingerprint)
    why = "train.resume=false" if list_checkpoints(run_dir) else "it has no complete checkpoint"
    _note(f"{run_dir}: an unfinished run with these settings; starting it over ({why})")
    return RunPlan("start", True, fingerprint)


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, old value, new value) for every shaping key and the data that differ, as JSON text."""
    a, b = old.get("settings", {}), new["settings"]
    out = [(k, json.dumps(a.get(k, "<unset>")), json.dumps(b.get(k, "<unset>")))
           for k in sorted(set(a) | set(b)) if a.get(k, "<unset>") != b.get(k, "<unset>")]
    if old.get("data_sha256") != new["data_sha256"]:
        out.append(("data content (sha256 of data.path)", str(old.get("data_sha256"))[:16] + "…",
                    str(new["data_sha256"])[:16] + "…"))
    return out


def _ways_out(run_dir: Path, keys: list[str] | None) -> str:
    keep = f"rerun with its settings (see {run_dir / 'config.yaml'})" + (
        f": {', '.join(keys)}" if keys else "")
    return (
        "Ways out:\n"
        f"  - replace that run, starting over: train.overwrite=true\n"
        f"  - keep it and run elsewhere: run_name=<new name> (runs/<new name>) or run_dir=<another folder>\n"
        f"  - continue or reuse that run: {keep}"
    )


def run_files(run_dir: Path) -> list[Path]:
    """The files and folders of a run in run_dir (config, metrics, checkpoints, summary, export)."""
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if p.name in RUN_FILES or _CHECKPOINT_DIR.match(p.name))


def claim_run_dir(run_dir: Path, plan: RunPlan, cfg: SkyTrainConfig) -> None:
    """Rank 0, once the data and model are found: clear a replaced run's files (or an interrupted save's
    `.tmp` folders), then write config.yaml and run.json, each atomically."""
    wait_for_pending_saves()  # an earlier failed train() of this process may still be writing here
    run_dir.mkdir(parents=True, exist_ok=True)
    for path in run_files(run_dir):
        if plan.clear or path.name.endswith(".tmp"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    _write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    _write_atomic(run_dir / RUN_JSON, json.dumps(plan.fingerprint, indent=2))


def read_metrics(path: Path, quiet: bool = False) -> list[dict[str, Any]]:
    """The records of metrics.jsonl. A torn last line (a crash mid-write) is dropped, saying so unless
    `quiet`; a line that does not parse anywhere else is an error naming the file and the line."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    rows = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not a record with an integer 'step'")
        except ValueError as e:
            if i == len(lines) - 1:
                if not quiet:
                    _note(f"{path}: dropping a torn last line {i + 1} ({line[:80]!r}): the run stopped mid-write")
                break
            raise RunDirError(
                f"{path}, line {i + 1}: not a metrics record ({e}): {line[:200]!r}. Only the last line can be torn "
                "by a crash; fix or delete this line, or start over with train.overwrite=true"
            ) from None
        rows.append(row)
    return rows


def trim_metrics(path: Path, done_steps: int) -> None:
    """Keep the logged steps up to `done_steps` (those a resumed run will not redo); atomically."""
    if not path.exists():
        return
    rows = [r for r in read_metrics(path) if r["step"] <= done_steps]
    _write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path}: unreadable ({type(e).__name__}: {e}); fix or delete it, or start over with "
                          "train.overwrite=true") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):  # an empty dict (model.tiny unset) adds no key
            out.update(_flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def _note(message: str) -> None:
    print(f"[sky_train] {message}", file=sys.stderr, flush=True)
