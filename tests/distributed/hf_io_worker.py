"""Run by test_hf_io_ranks.py under torchrun, for each job: build the meta model of MODEL_DIR, fully_shard it on
MESH, load it with hf_io.load_pretrained_shards, export it with hf_io.save_hf to OUT_DIR; measure each phase's peak
host memory (VmHWM after a reset through /proc/self/clear_refs) and check every local shard against the
rows the file holds. Writes one JSON report per rank to OUT_DIR's sibling `<OUT_DIR>.rank<r>.json`.

    torchrun --nproc_per_node 2 hf_io_worker.py MAX_SHARD_SIZE MODEL_DIR,OUT_DIR,MESH [MODEL_DIR,OUT_DIR,MESH ...]
    MESH: "2" (1-D, Shard(0)) or "RxS" (2-D ("replicate", "shard"), e.g. "1x2" or "2x1")
"""

import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from torch.distributed.device_mesh import init_device_mesh
from transformers import AutoConfig, AutoTokenizer

from sky_train.hf_io import load_pretrained_shards, save_hf, weight_map
from sky_train.model import SFTModel, build_meta_model
from sky_train.parallel import apply_fsdp, materialize_shards


def memory(field: str) -> int:
    """Bytes of a /proc/self/status field (VmRSS: now, VmHWM: peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak() -> int:
    """Set the peak (VmHWM) to the current RSS; returns that RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return memory("VmRSS")


def run(model_dir: str, out_dir: Path, mesh_spec: str, max_shard_size: str) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    if "x" in mesh_spec:
        shape = tuple(int(n) for n in mesh_spec.split("x"))
        mesh = init_device_mesh("cpu", shape, mesh_dim_names=("replicate", "shard"))
    else:
        mesh = init_device_mesh("cpu", (int(mesh_spec),))
    shard_ranks, shard_index = mesh.size(mesh.ndim - 1), mesh.get_local_rank(mesh.ndim - 1)

    config = AutoConfig.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lm = build_meta_model(config, "sdpa")
    model = SFTModel(lm)
    apply_fsdp(model, mesh, "bf16")

    clock = time.perf_counter()
    base = reset_peak()
    materialize_shards(model, torch.device("cpu"), False)
    load_pretrained_shards(model, model_dir)
    load_peak = memory("VmHWM") - base
    seconds = {"load": time.perf_counter() - clock}

    # Each local shard equals its rows of the file: FSDP2 shards dim 0 as torch.chunk does (ceil(rows / ranks)
    # rows per rank), computed here independently of the loader's offsets.
    files = weight_map(model_dir)
    shard_bytes, model_bytes, largest = 0, 0, 0
    for key, t in model.state_dict().items():
        name = key.removeprefix("lm.")
        source = name if name in files else "model.embed_tokens.weight"  # tied: the head is the embedding
        local = t.to_local()
        rows = t.shape[0]
        step = math.ceil(rows / shard_ranks)
        start, stop = min(rows, shard_index * step), min(rows, (shard_index + 1) * step)
        with safe_open(str(Path(model_dir) / files[source]), framework="pt") as f:
            expected = f.get_slice(source)[start:stop]
            assert torch.equal(local, expected.float()), f"rank {rank}: {name} rows {start}:{stop} differ from the file"
            del expected
        shard_bytes += local.nbytes
        model_bytes += t.numel() * 4
        largest = max(largest, t.numel() * 4)

    seconds["check"] = time.perf_counter() - clock - seconds["load"]
    before_export = reset_peak()
    clock = time.perf_counter()
    save_hf(model, config, tokenizer, out_dir, type(lm).__name__, torch.bfloat16, max_shard_size, base_dir=model_dir)
    export_peak = memory("VmHWM") - before_export
    seconds["export"] = time.perf_counter() - clock

    report = {"rank": rank, "world": world, "load_peak": load_peak, "export_peak": export_peak,
              "shard_fp32_bytes": shard_bytes, "model_fp32_bytes": model_bytes, "largest_fp32_tensor": largest,
              "rss_after_load": before_export, "seconds": seconds}
    Path(f"{out_dir}.rank{rank}.json").write_text(json.dumps(report))


dist.init_process_group("gloo")
for job in sys.argv[2:]:
    model_dir, out_dir, mesh_spec = job.split(",")
    run(model_dir, Path(out_dir), mesh_spec, sys.argv[1])
dist.barrier()
dist.destroy_process_group()
