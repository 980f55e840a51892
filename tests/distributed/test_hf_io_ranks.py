"""2 gloo ranks load a Hugging Face model folder shard by shard and export it tensor by tensor
(hf_io_worker.py under torchrun): every rank's shard equals its rows of the files, the export equals the
originals through `AutoModelForCausalLM.from_pretrained`, and host memory stays near one rank's shard,
far below the model, for a model that is large for this machine (the proof for the 32B case)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import subprocess_env

WORKER = Path(__file__).with_name("hf_io_worker.py")
GB = 1e9


def run_worker(tmp_path, max_shard_size, *jobs):
    """jobs: (model_dir, out_dir, mesh) run one after the other in one torchrun (its start-up is the slow part);
    returns each job's two rank reports."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           max_shard_size, *(",".join(map(str, job)) for job in jobs)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return [[json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(2)] for _, out, _ in jobs]


def assert_export_equals(out_dir, model_dir):
    """from_pretrained of the export, tensor for tensor against the original files (bf16: exact)."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from sky_train.hf_io import weight_map

    exported = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.bfloat16)
    params = exported.state_dict()
    files = weight_map(model_dir)
    for name in sorted(set(files.values())):
        with safe_open(str(Path(model_dir) / name), framework="pt") as f:
            for key in f.keys():
                assert torch.equal(params[key], f.get_tensor(key)), key
    head = {"lm_head.weight"} if exported.config.tie_word_embeddings else set()  # tied: the embedding only
    assert set(params) == set(files) | head
    return exported


def save_tiny(folder, tied):
    from transformers import AutoModelForCausalLM, Qwen2Config

    from sky_train.embedded import load_tiny_tokenizer

    torch.manual_seed(1)
    # 1027 rows: the two ranks' shards of the embedding and head differ in size (514 and 513 rows).
    config = Qwen2Config(vocab_size=1027, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    AutoModelForCausalLM.from_config(config).to(torch.bfloat16).save_pretrained(folder, max_shard_size="60KB")
    load_tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_two_ranks_read_their_rows_and_export_the_same_model(tmp_path):
    """1-D Shard(0), and the 2-D ("replicate", "shard") hybrid mesh both ways; tied and untied embeddings;
    an uneven row count; an export whose embedding exceeds max_shard_size (a file of its own)."""
    jobs = [(save_tiny(tmp_path / f"model_{mesh}", tied), tmp_path / f"out_{mesh}", mesh)
            for mesh, tied in [("2", True), ("1x2", False), ("2x1", True)]]
    run_worker(tmp_path, "60KB", *jobs)
    for model_dir, out, _ in jobs:
        assert (out / "model.safetensors.index.json").exists()
        assert not out.with_name(out.name + ".tmp").exists()
        assert_export_equals(out, model_dir)


def write_large_model(folder, file_bytes):
    """A wide Qwen2 (~0.8B parameters, ~1.6 GB of bf16 safetensors in several files with an index), written
    one file at a time, so this process never holds more than one file's tensors. Values: random bits with
    a bounded exponent (finite, |x| < 2), drawn from one pool at a per-tensor offset so every row differs."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, Qwen2Config

    from sky_train.embedded import load_tiny_tokenizer

    config = Qwen2Config(vocab_size=16384, hidden_size=2048, intermediate_size=8192, num_hidden_layers=12,
                         num_attention_heads=16, num_key_value_heads=4, tie_word_embeddings=False,
                         max_position_embeddings=4096)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()}
    pool_size = max(math.prod(s) for s in shapes.values()) + 7919
    pool = torch.from_numpy(np.random.default_rng(0).integers(0, 2**16, pool_size, dtype=np.uint16).view(np.int16))
    pool = (pool & -31745) | 0x3C00  # keep sign and mantissa, exponent in 120..127: bf16 in [2^-7, 2)

    folder.mkdir()
    weight_map, batch, filled, files = {}, {}, 0, 0

    def flush():
        nonlocal batch, filled, files
        files += 1
        name = f"part-{files}.safetensors"
        save_file(batch, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in batch})
        batch, filled = {}, 0

    for i, (key, shape) in enumerate(shapes.items()):
        n = math.prod(shape)
        start = (i * 104729) % (pool_size - n + 1)
        batch[key] = pool[start:start + n].clone().view(torch.bfloat16).reshape(shape)
        filled += 2 * n
        if filled >= file_bytes:
            flush()
    if batch:
        flush()
    total = sum(2 * math.prod(s) for s in shapes.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    config.save_pretrained(folder)
    load_tiny_tokenizer().save_pretrained(folder)
    return total, files


@pytest.mark.slow
def test_two_ranks_load_and_export_a_large_model_within_a_shard_of_memory(tmp_path):
    model_dir = tmp_path / "model"
    bf16_bytes, n_files = write_large_model(model_dir, file_bytes=300_000_000)
    assert bf16_bytes > 1.5 * GB and n_files >= 5
    (reports,) = run_worker(tmp_path, "256MB", (model_dir, tmp_path / "out", "2"))
    for r in reports:
        print(f"rank {r['rank']}: load peak {r['load_peak'] / GB:.2f} GB (fp32 shard {r['shard_fp32_bytes'] / GB:.2f}"
              f" GB, model fp32 {r['model_fp32_bytes'] / GB:.2f} GB); export peak {r['export_peak'] / GB:.2f} GB"
              f" (largest fp32 tensor {r['largest_fp32_tensor'] / GB:.3f} GB)")
        model_fp32 = r["model_fp32_bytes"]
        assert model_fp32 == 2 * bf16_bytes
        # Loading: the rank's fp32 shard plus its rows of one input file and one tensor, never the model.
        assert r["load_peak"] < r["shard_fp32_bytes"] + 0.25 * model_fp32
        assert r["load_peak"] < 0.6 * model_fp32  # with 2 ranks the fp32 shard alone is half of it
        # Export: one gathered fp32 tensor and its bf16 copy at a time, below one 256 MB shard plus a tensor.
        assert r["export_peak"] < 256e6 + 3 * r["largest_fp32_tensor"]
        assert r["export_peak"] < 0.25 * bf16_bytes

    out = tmp_path / "out"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    names = sorted(set(index["weight_map"].values()))
    assert names == [f"model-{i:05d}-of-{len(names):05d}.safetensors" for i in range(1, len(names) + 1)]
    assert index["metadata"]["total_size"] == bf16_bytes
    assert all((out / n).stat().st_size < 256e6 + 1e6 for n in names)  # no tensor here exceeds a shard
    del reports
    assert_export_equals(out, model_dir)
