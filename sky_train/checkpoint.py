"""Resumable training checkpoints (DCP): asynchronous saves, and resuming with a fallback.

Checkpoints: `<run_dir>/step_000400/` holds the sharded model and optimiser state (torch.distributed.checkpoint:
every rank writes its own shards, so run_dir must be on a filesystem all nodes see), each rank's RNG
state, and `trainer_state.json` (the step and the run's totals so far). The next step to run follows from
the step number alone: the data order is a pure function of (seed, epoch, step), so resuming mid-epoch or
exactly at an epoch boundary replays nothing and skips nothing.

Saving is asynchronous (`train.async_save`): the state is staged (copied to host memory) while training
waits, a few seconds; the write (~390 GB for 32B, minutes) then runs in a background thread while training
goes on. It lands in `step_000400.tmp/` and only a complete write is renamed to `step_000400/`, so an
interrupted save never looks finished. The next save, the end of training and interpreter exit wait for it.

Resuming: rank 0 lists the checkpoints (ranks listing a shared filesystem can disagree), checks the newest
cheaply, and broadcasts its choice; all ranks load it, and a failure on any rank is agreed on before rank 0
falls back to the previous checkpoint, naming what was wrong.

The final Hugging Face export is `hf_io.save_hf`.
"""

from __future__ import annotations

import atexit
import json
import re
import shutil
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

_STEP_DIR = re.compile(r"^step_(\d{6,})$")
TRAINER_STATE = "trainer_state.json"


class CheckpointError(RuntimeError):
    """No usable checkpoint to resume from; raised on every rank with the same message."""


@dataclass
class RunTotals:
    """What the run has done up to a checkpoint, kept in its trainer_state.json, so that a resumed run's
    summary describes the whole run and not only the part after the resume."""

    steps: int = 0  # optimiser steps done
    tokens: int = 0  # real (non-padding) tokens trained on, all ranks
    computed_tokens: int = 0  # rows x width, padding included
    time_s: float = 0.0  # summed step times (start-up, saves and waits between runs not counted)
    first_loss: float | None = None  # the loss of the run's first step

    def plus(self, steps: int, tokens: int, computed_tokens: int, time_s: float, first_loss: float | None) -> RunTotals:
        """These totals followed by a part of `steps` steps with its own counts (a resumed process's)."""
        return RunTotals(self.steps + steps, self.tokens + tokens, self.computed_tokens + computed_tokens,
                         self.time_s + time_s, self.first_loss if self.first_loss is not None else first_loss)


@dataclass
class LoadedCheckpoint:
    path: Path
    step: int
    totals: RunTotals


def step_of(path: Path) -> int:
    m = _STEP_DIR.match(path.name)
    if m is None:
        raise ValueError(f"{path}: not a checkpoint folder (step_NNNNNN)")
    return int(m.group(1))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (renamed from .tmp, with trainer_state.json), oldest first."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if _STEP_DIR.match(p.name) and (p / TRAINER_STATE).exists()]
    return sorted(found, key=step_of)


# ---- save --------------------------------------------------------------------------------------------------


class CheckpointSaver:
    """Saves checkpoints for one run; at most one save in flight.

    All ranks call `save` after the same optimiser step and `close` after the loop. With `async_save`, `save`
    returns once the state is staged: the copy is the training's, so the next optimizer.step may change the
    parameters at once, while a background thread writes the copy and (rank 0) renames it into place.
    """

    def __init__(self, run_dir: Path, keep: int, async_save: bool, device: torch.device, cpu_offload: bool) -> None:
        self.run_dir, self.keep, self.async_save = run_dir, keep, async_save
        self.rank = dist.get_rank()
        self._on_gpu = device.type == "cuda" and not cpu_offload  # where the state to stage lives
        self._pending: Future | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stager: DefaultStager | None = None
        self._pg: dist.ProcessGroup | None = None
        _SAVERS.append(self)

    def _start_async(self) -> None:
        """Made at the first save (every rank reaches it after the same step), not for runs that never save."""
        # The background write runs DCP's collectives (plan gather, metadata) while the main thread runs
        # FSDP's; on one process group the two streams of collectives could interleave differently on
        # different ranks and hang. A separate gloo group keeps them apart (as torchtitan does).
        self._pg = _checkpoint_group()
        # Staging copies the rank's shards into host memory, synchronously (training then may change the
        # parameters at once), into buffers reused from save to save: one more copy of each rank's model and
        # optimiser state for the run (~390 GB per 8-GPU node for 32B, besides CPU offload's ~524 GB).
        # Pinned when copied from the GPU, so that the copy is a DMA.
        self._stager = DefaultStager(StagingOptions(
            use_pinned_memory=self._on_gpu, use_shared_memory=False, use_async_staging=False,
            use_non_blocking_copy=self._on_gpu,
        ))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sky_train-checkpoint")

    def save(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, totals: RunTotals) -> None:
        """Checkpoint after optimiser step `step` (1-based count of steps done)."""
        self.wait()  # the previous save is complete (and renamed) before this one starts
        final = self.run_dir / f"step_{step:06d}"
        tmp = final.with_name(final.name + ".tmp")
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            state = {"step": step, "world_size": dist.get_world_size(), "totals": asdict(totals)}
            (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2))
        dist.barrier()
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        torch.save(rng, tmp / f"rng_rank{self.rank:05d}.pt")
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state_dict = {"model": model_sd, "optim": optim_sd}
        # One process: no plan exchange. DCP's object collectives (gather/broadcast of pickled plans over
        # gloo) left every later training step of a one-process CPU run ~25% slower (measured: 5,500 -> 4,000
        # tokens/s after the first save, sync or async; with no_dist, 5,500 throughout). Same files either way.
        no_dist = dist.get_world_size() == 1
        if self.async_save:
            if self._executor is None:
                self._start_async()
            upload = dcp.async_save(state_dict, checkpoint_id=str(tmp), process_group=self._pg,
                                    async_stager=self._stager, no_dist=no_dist)
            self._pending = self._executor.submit(self._finish, upload, tmp, final)  # type: ignore[union-attr]
        else:
            dcp.save(state_dict, checkpoint_id=str(tmp), no_dist=no_dist)
            self._finish(None, tmp, final)

    def wait(self) -> None:
        """Block until the save in flight (if any) is written and renamed into place. A failed write is
        reported and training goes on: losing a checkpoint beats losing the hours since the last one."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.result()
        except (Exception, CheckpointException) as e:  # noqa: BLE001 (the .tmp folder is never taken as one)
            print(f"[sky_train] WARNING: rank {self.rank}: a checkpoint could not be written, training goes on: "
                  f"{_describe(e)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Wait for the last save and release the staging buffers. Every rank calls this after the loop."""
        self.wait()
        if self._stager is not None:
            self._stager.close()
            self._stager = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self in _SAVERS:
            _SAVERS.remove(self)

    def _finish(self, upload: Future | None, tmp: Path, final: Path) -> None:
        if upload is not None:
            upload.result()  # raises what the write raised
        # DCP's coordinator (rank 0) writes .metadata only after every rank reported its shards written, so
        # rank 0 knows the checkpoint is complete without another collective.
        if self.rank != 0:
            return
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        step = step_of(final)
        older = [p for p in list_checkpoints(self.run_dir) if step_of(p) < step]
        for old in older[: max(0, len(older) - (self.keep - 1))] if self.keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)


_SAVERS: list[CheckpointSaver] = []
_GROUP: list[tuple[Any, dist.ProcessGroup]] = []  # (the default group it was made in, the checkpoint group)


def _checkpoint_group() -> dist.ProcessGroup:
    """One gloo group for background saves per process group (made once: every rank reaches this point at
    the same moment, as creating a group is collective)."""
    world = dist.distributed_c10d._get_default_group()
    if not _GROUP or _GROUP[0][0] is not world:
        _GROUP[:] = [(world, dist.new_group(backend="gloo"))]
    return _GROUP[0][1]


def wait_for_pending_saves() -> None:
    """Let every background save of this process finish (and be renamed into place): at exit, or before an
    earlier failed `train()` call's run folder is used again in the same process."""
    for saver in list(_SAVERS):
        saver.close()


atexit.register(wait_for_pending_saves)


# ---- resume ------------------------------------------------------------------------------------------------


def check_checkpoint(path: Path) -> str | None:
    """What is wrong with a checkpoint that cheap checks can see (None: nothing): trainer_state.json parses,
    .metadata unpickles, every shard file is as long as the metadata says, every rank's RNG file loads."""
    try:
        state = json.loads((path / TRAINER_STATE).read_text())
        if not isinstance(state, dict) or state.get("step") != step_of(path):
            return f"{TRAINER_STATE} does not give step {step_of(path)}: {str(state)[:200]}"
        world = int(state["world_size"])
        RunTotals(**state.get("totals", {}))
    except Exception as e:  # noqa: BLE001 (named in the message)
        return f"{TRAINER_STATE} unreadable ({_describe(e)})"
    try:
        metadata = dcp.FileSystemReader(str(path)).read_metadata()
        needed: dict[str, int] = {}
        for info in metadata.storage_data.values():
            needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    except Exception as e:  # noqa: BLE001
        return f".metadata unreadable ({_describe(e)})"
    for name, size in sorted(needed.items()):
        have = (path / name).stat().st_size if (path / name).exists() else None
        if have is None or have < size:
            return f"{name} is {'missing' if have is None else f'truncated ({have} of {size} bytes)'}"
    for rank in range(world):
        rng_file = path / f"rng_rank{rank:05d}.pt"
        try:
            torch.load(rng_file, weights_only=True)["cpu"]
        except Exception as e:  # noqa: BLE001
            return f"{rng_file.name} unreadable ({_describe(e)})"
    return None


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> LoadedCheckpoint:
    """Restore model, optimiser and this rank's RNG from `path` (collective: DCP reads with every rank)."""
    state = json.loads((path / TRAINER_STATE).read_text())
    model_sd, optim_sd = get_state_dict(model, optimizer)
    target = {"model": model_sd, "optim": optim_sd}
    dcp.load(target, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=target["model"], optim_state_dict=target["optim"])
    rng_file = path / f"rng_rank{dist.get_rank():05d}.pt"
    if rng_file.exists():  # absent when resuming on more ranks than saved: the data order does not need it
        rng = torch.load(rng_file, weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    totals = RunTotals(**state.get("totals", {})) if "totals" in state else RunTotals(steps=int(state["step"]))
    return LoadedCheckpoint(path, int(state["step"]), replace(totals, steps=int(state["step"])))


def load_latest_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> LoadedCheckpoint:
    """Resume from the newest usable checkpoint in run_dir; CheckpointError when none is. Collective.

    Rank 0 picks and broadcasts (a shared filesystem may list differently on other nodes); every rank loads
    it; a failure on any rank is gathered, so all ranks fall back to the previous checkpoint together.
    """
    rejected: dict[str, str] = {}  # checkpoint name -> what is wrong with it
    while True:
        choice: Path | None = None
        if dist.get_rank() == 0:
            for path in reversed(list_checkpoints(run_dir)):
                if path.name in rejected:
                    continue
                problem = check_checkpoint(path)
                if problem is None:
                    choice = path
                    break
                rejected[path.name] = problem
                _warn(f"{path} cannot be resumed from: {problem}")
        box = [choice, rejected]
        dist.broadcast_object_list(box, src=0)
        choice, rejected = box
        if choice is None:
            raise CheckpointError(
                f"{run_dir}: no usable checkpoint to resume from:\n"
                + "".join(f"  {name}: {why}\n" for name, why in sorted(rejected.items()))
                + ("" if rejected else "  (no complete step_NNNNNN/ folder)\n")
                + "Ways out: delete the broken checkpoint folders (or fix their files) and run again; "
                "train.resume=false starts this run over from step 0; train.overwrite=true starts over too."
            )
        error = None
        try:
            loaded = load_checkpoint(choice, model, optimizer)
        except (Exception, CheckpointException) as e:  # noqa: BLE001 (agreed on below, then named)
            error, loaded = _describe(e), None
        errors: list[str | None] = [None] * dist.get_world_size()
        dist.all_gather_object(errors, error)
        by_message: dict[str, list[str]] = {}  # DCP raises the same error on every rank: name it once
        for r, msg in enumerate(errors):
            if msg is not None:
                by_message.setdefault(msg, []).append(str(r))
        if not by_message and loaded is not None:
            return loaded
        rejected[choice.name] = "loading failed (" + "; ".join(
            f"rank{'s' if len(ranks) > 1 else ''} {', '.join(ranks)}: {msg}" for msg, ranks in by_message.items()) + ")"
        if dist.get_rank() == 0:
            _warn(f"{choice} cannot be resumed from: {rejected[choice.name]}")


def _warn(message: str) -> None:
    print(f"[sky_train] WARNING: {message}", file=sys.stderr, flush=True)


def _describe(e: BaseException) -> str:
    """One line for an exception; DCP's CheckpointException carries each failed rank's own exception."""
    if isinstance(e, CheckpointException) and e.failures:
        rank, (inner, _) = next(iter(sorted(e.failures.items(), key=lambda kv: kv[0])))
        return f"{type(inner).__name__} on rank {rank}: {_first_line(inner)}"
    return f"{type(e).__name__}: {_first_line(e)}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else "")[:200]
