"""Resumable training checkpoints (DCP) and the final Hugging Face export.

Checkpoints: `<run_dir>/step_000400/` holds the sharded model and optimiser state (torch.distributed.checkpoint:
every rank writes its own shards, so run_dir must be on a filesystem all nodes see), each rank's RNG
state, and `trainer_state.json`. The next step to run follows from the step number alone: the data
order is a pure function of (seed, epoch, step), so resuming mid-epoch or exactly at an epoch boundary
replays nothing and skips nothing.

Export: config, sharded safetensors and the tokenizer with its chat template, loadable by
`AutoModelForCausalLM.from_pretrained` and by vLLM.

Both are written into a `.tmp` sibling and renamed into place when complete, so an interrupted save never
leaves a folder that looks finished.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

_STEP_DIR = re.compile(r"^step_(\d{6,})$")


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, keep: int) -> Path:
    """All ranks call this after optimiser step `step` (1-based count of steps done)."""
    rank = dist.get_rank()
    final = run_dir / f"step_{step:06d}"
    tmp = final.with_name(final.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, tmp / f"rng_rank{rank:05d}.pt")
    dist.barrier()
    if rank == 0:
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "world_size": dist.get_world_size()}))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (those with trainer_state.json), oldest first."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if _STEP_DIR.match(p.name) and (p / "trainer_state.json").exists()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))  # type: ignore[union-attr]


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore model, optimiser and this rank's RNG from `path`; returns the number of steps done."""
    state = json.loads((path / "trainer_state.json").read_text())
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
    return int(state["step"])


def save_hf(
    state_dict: dict[str, torch.Tensor],
    model_config: Any,
    tokenizer: Any,
    out_dir: Path,
    architecture: str,
    dtype: torch.dtype = torch.bfloat16,
    max_shard_size: str = "5GB",
) -> Path:
    """Write `state_dict` (transformers keys) as a Hugging Face model directory at `out_dir`."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    sd = {k: v.detach().to(dtype).contiguous() for k, v in state_dict.items()}
    if getattr(model_config, "tie_word_embeddings", False):
        sd.pop("lm_head.weight", None)  # stored once, as the embedding (safetensors refuses shared tensors)

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    split = split_torch_state_dict_into_shards(sd, max_shard_size=max_shard_size)
    for filename, keys in split.filename_to_tensors.items():
        save_file({k: sd[k] for k in keys}, str(tmp / filename), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in sd.values())},
                 "weight_map": split.tensor_to_filename}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))

    config = type(model_config).from_dict(model_config.to_dict())
    config.dtype = dtype  # what the weights are stored in; transformers and vLLM load in it by default
    config.architectures = [architecture]
    config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)

    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
