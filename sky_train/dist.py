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


def cpu_threads_per_rank(requested: int | None, local_world_size: int, cores: int) -> int:
    """Intra-op threads for one rank: the requested number, else this node's cores shared among its ranks.

    torchrun sets OMP_NUM_THREADS=1 for every rank; left so, a CPU-offloaded AdamW over ~4B parameters per
    rank (32B on 8 GPUs) would run on one thread of a 100+-core host.
    """
    if requested is not None:
        return requested
    return max(1, cores // max(1, local_world_size))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def init_distributed(requested_device: str = "auto", replicate: int = 1, cpu_threads: int | None = None) -> DistInfo:
    """The process group (made once per process), this rank's device, its CPU threads, and the FSDP mesh:
    1-D over all ranks, or ("replicate", "shard") with `replicate` groups for hybrid sharding."""
    device = resolve_device(requested_device)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    torch.set_num_threads(cpu_threads_per_rank(cpu_threads, local_world, usable_cores()))
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
    if world % replicate:
        raise ValueError(f"fsdp.replicate={replicate} must divide the number of ranks ({world})")
    if replicate == 1:
        mesh = init_device_mesh(device.type, (world,))
    else:
        # Rank r is in replica group r // shard: with one group per node, shards stay within a node (fast
        # links) and only the gradient all-reduce crosses nodes.
        mesh = init_device_mesh(device.type, (replicate, world // replicate), mesh_dim_names=("replicate", "shard"))
    return DistInfo(dist.get_rank(), world, local_rank, device, mesh)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(values: list[float], op: str = "sum", device: torch.device | None = None) -> list[float]:
    """All-reduce a few Python numbers (sum or max) in one collective, in float64 (exact for counts < 2**53)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()
