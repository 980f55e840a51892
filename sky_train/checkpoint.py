"""Export the trained model in Hugging Face format (config, sharded safetensors, tokenizer with its chat
template), loadable by `AutoModelForCausalLM.from_pretrained` and by vLLM.

Files are written into a temporary sibling folder and renamed into place at the end, so an interrupted
export never leaves a half-written `hf/` that looks complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch


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
