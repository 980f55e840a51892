"""Run by test_grad_memory.py under torchrun: one micro-batch of a sharded model, then this rank's gradient
bytes (sharded, and unsharded kept by FSDP between micro-batches) as one JSON line per rank."""

import json
import sys

import torch
import torch.distributed as dist
from transformers import Qwen2Config

from sky_train.dist import init_distributed
from sky_train.model import SFTModel, build_meta_model, reset_rotary_buffers
from sky_train.packing import collate_rows
from sky_train.data import Sample
from sky_train.parallel import apply_fsdp, gradient_bytes

sync = sys.argv[1] == "sync"
out = sys.argv[2]
info = init_distributed("cpu")
config = Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
model = SFTModel(build_meta_model(config, "sdpa"), 64)
apply_fsdp(model, info.mesh, "bf16")
model.to_empty(device="cpu")
torch.manual_seed(0)
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.02)
reset_rotary_buffers(model)
ids = list(range(3, 40))
mb = collate_rows([[Sample(ids, ids[1:] + [-100], "x")]], 0)
model.set_requires_gradient_sync(sync)
loss = model(mb.input_ids, mb.position_ids, mb.labels, mb.label_positions)
loss.backward()
sharded, unsharded = gradient_bytes(model)
n_params = sum(p.numel() for p in model.parameters())  # global numel of the sharded parameters
units = sorted(type(m).__name__ for m in model.modules() if hasattr(m, "_get_fsdp_state"))
with open(f"{out}.{info.rank}", "w") as f:
    json.dump({"rank": info.rank, "sharded": sharded, "unsharded": unsharded, "params": n_params,
               "units": units}, f)
dist.barrier()
