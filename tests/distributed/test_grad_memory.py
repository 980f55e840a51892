"""Gradient memory between micro-batches, measured on 2 gloo ranks (issue 8, item 1), and the FSDP units
(item 7): the embedding and the LM head are units of their own."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env

WORKER = Path(__file__).with_name("grad_memory_worker.py")


def measure(tmp_path, mode):
    out = tmp_path / mode
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), mode,
           str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(Path(f"{out}.{rank}").read_text()) for rank in (0, 1)]


@pytest.mark.slow
def test_gradients_stay_sharded_between_micro_batches_by_default(tmp_path):
    """bf16 policy (fp32 reduction), as on the GPUs. With a sync after every micro-batch each rank keeps
    only its fp32 shard of the gradients: 4 bytes x parameters / 2. Without (the opt-in), FSDP keeps the
    whole model's unsharded fp32 gradients on every rank: 4 bytes x parameters, twice the sharded total."""
    synced = measure(tmp_path, "sync")
    n = synced[0]["params"]
    for rank in synced:
        assert rank["unsharded"] == 0
        assert rank["sharded"] == pytest.approx(4 * n / 2, rel=0.02)  # row-wise shards: uneven by a row
    assert sum(rank["sharded"] for rank in synced) == 4 * n
    unsynced = measure(tmp_path, "nosync")
    for rank in unsynced:
        assert rank["sharded"] == 0 and rank["unsharded"] == 4 * n
    # The embedding and the LM head are their own units, beside every decoder layer and the root.
    assert synced[0]["units"] == ["FSDPEmbedding", "FSDPLMHeadLoss", *["FSDPQwen2DecoderLayer"] * 3, "FSDPSFTModel"]
