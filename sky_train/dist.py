"""Process-group set-up and the few collectives the loop needs.

Launched by torchrun, the env:// variables pick the rank; run as a plain `python -m sky_train`, a
one-process group is made in memory, so the same FSDP2 code path runs in both cases. gloo on CPU, nccl on
CUDA.

The group is made once per process and reused by every later `train()` call (Hydra sweep points, library
callers), and destroyed at exit. Re-initialising it per job deadlocks under torchrun: the launcher's store
outlives `destroy_process_group`, and the second rendezvous reads the first one's keys.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    mesh: DeviceMesh

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but torch sees no CUDA device (use device=cpu or auto)")
    return torch.device(requested)


def init_distributed(requested_device: str = "auto") -> DistInfo:
    device = resolve_device(requested_device)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    # On GPUs, gloo serves collectives on CPU tensors: with fsdp.cpu_offload the gradients (and so
    # clip_grad_norm_'s all-reduce) live on the host, where nccl cannot reach them.
    backend = "cuda:nccl,cpu:gloo" if device.type == "cuda" else "gloo"
    if dist.is_initialized():
        needed = "nccl" if device.type == "cuda" else "gloo"
        if needed not in str(dist.get_backend()):  # the mixed backend may report itself in either form
            raise RuntimeError(f"a {dist.get_backend()} process group exists; device={device.type} needs {needed}")
    else:
        if "RANK" in os.environ:
            dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        atexit.register(destroy_distributed)
    world = dist.get_world_size()
    mesh = init_device_mesh(device.type, (world,))
    return DistInfo(dist.get_rank(), world, local_rank, device, mesh)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(values: list[float], op: str = "sum", device: torch.device | None = None) -> list[float]:
    """All-reduce a few Python numbers (sum or max) in one collective, in float64 (exact for counts < 2**53)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()
