"""Build or load the causal LM to fine-tune, its tokenizer, and the loss-computing wrapper around it.

No parallelism here (that is `parallel.py`). The model is built on the meta device, so that a 32B model
costs no memory before it is sharded; rank 0 alone reads the weights (`load_full_state_dict`) and
`parallel.load_sharded_weights` broadcasts them into the shards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sky_train.config import ModelConfig
from sky_train.loss import chunked_cross_entropy_sum

# The embedded default: a 2-layer Qwen2 (~1M parameters) that trains in seconds on a CPU.
TINY_QWEN2 = dict(
    vocab_size=1024, hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=4096, rope_theta=10000.0, tie_word_embeddings=False,
    rms_norm_eps=1e-6,
)


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The run's tokenizer: `model.tokenizer`, else the model directory's, else the embedded tiny one."""
    from transformers import AutoTokenizer

    path = cfg.tokenizer or cfg.name_or_path
    if path is None:
        from sky_train.embedded import load_tiny_tokenizer

        return load_tiny_tokenizer()
    tok = AutoTokenizer.from_pretrained(path)
    if tok.chat_template is None:
        raise ValueError(f"{path}: the tokenizer has no chat template; SFT rendering needs one")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model_config(cfg: ModelConfig) -> Any:
    from transformers import AutoConfig, Qwen2Config

    if cfg.name_or_path is None:
        return Qwen2Config(**{**TINY_QWEN2, **cfg.tiny})
    return AutoConfig.from_pretrained(cfg.name_or_path)


def pick_attn_implementation(requested: str, device: torch.device, mixed_precision: str) -> str:
    """'auto': varlen attention, so packed documents cost only their own attention: flash-attn's kernel on
    CUDA in bf16 when installed, else sky_train's (torch's flash varlen kernel on CUDA, per-document SDPA on
    CPU). On CUDA in fp32 (no flash kernel takes fp32): transformers' SDPA with its block-diagonal mask."""
    if requested != "auto":
        return requested
    from sky_train.attention import cuda_varlen_available, register_varlen_attention

    if device.type == "cuda":
        if mixed_precision != "bf16":
            return "sdpa"
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
        if not cuda_varlen_available():
            return "sdpa"
    return register_varlen_attention()


def build_meta_model(model_config: Any, attn_implementation: str) -> nn.Module:
    """The architecture on the meta device, fp32 (the master weights' dtype under FSDP mixed precision)."""
    from transformers import AutoModelForCausalLM

    if attn_implementation not in ("sdpa", "eager", "flash_attention_2", "flash_attention_3"):
        from sky_train.attention import register_varlen_attention

        register_varlen_attention()
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(model_config, attn_implementation=attn_implementation, dtype=torch.float32)


def load_full_state_dict(cfg: ModelConfig, model_config: Any, seed: int) -> dict[str, torch.Tensor]:
    """Rank 0's full fp32 state dict, keyed like the transformers model: the directory's safetensors, or a
    seeded random initialisation (the tiny default, or `model.pretrained=false`)."""
    if cfg.name_or_path is not None and cfg.pretrained:
        sd = read_safetensors_dir(Path(cfg.name_or_path))
    else:
        from transformers import AutoModelForCausalLM

        torch.manual_seed(seed)
        sd = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32).state_dict()
    if getattr(model_config, "tie_word_embeddings", False):
        # Tied checkpoints store only the embedding; the model still has both names for one tensor.
        sd.setdefault("lm_head.weight", sd["model.embed_tokens.weight"])
    return {k: v.to(torch.float32) for k, v in sd.items()}


def read_safetensors_dir(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = path / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = [p.name for p in sorted(path.glob("*.safetensors"))]
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors weights (model.name_or_path must be a local HF model dir)")
    sd: dict[str, torch.Tensor] = {}
    for name in files:
        sd.update(load_file(str(path / name)))
    return sd


def reset_rotary_buffers(model: nn.Module) -> None:
    """Recompute rotary `inv_freq` buffers, which are non-persistent: `to_empty` leaves them uninitialised
    and no state dict restores them."""
    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding") and hasattr(module, "config"):
            fresh = type(module)(config=module.config)
            for name, buf in fresh.named_buffers():
                getattr(module, name).copy_(buf.to(getattr(module, name).dtype))


class SFTModel(nn.Module):
    """A causal LM whose forward returns the summed CE over labelled tokens (see loss.py).

    Wrapping lets the LM head run chunk by chunk on labelled positions only, inside the FSDP root's forward
    (so its parameters are unsharded while it runs), instead of materialising (B, T, vocab) logits.
    """

    def __init__(self, lm: nn.Module, loss_chunk_tokens: int = 4096) -> None:
        super().__init__()
        self.lm = lm
        self.loss_chunk_tokens = loss_chunk_tokens

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, labels: torch.Tensor, **attn_kwargs: Any
    ) -> torch.Tensor:
        # attention_mask=None + position_ids: transformers builds the per-document causal mask (SDPA), and
        # varlen kernels take cu_seq_lens_* from attn_kwargs.
        out = self.lm.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False, **attn_kwargs)
        return chunked_cross_entropy_sum(
            out.last_hidden_state, self.lm.get_output_embeddings(), labels, self.loss_chunk_tokens
        )

    def decoder_layers(self) -> nn.ModuleList:
        return self.lm.get_decoder().layers


def count_params(model_config: Any) -> tuple[int, int, int]:
    """(all parameters, body parameters without the input embedding and LM head, LM head parameters),
    from a meta model; for FLOP counts."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(model_config)
    total = sum(p.numel() for p in m.parameters())  # tied weights count once
    embed = m.get_input_embeddings().weight.numel()
    head = m.get_output_embeddings().weight.numel()
    return total, total - embed - (0 if model_config.tie_word_embeddings else head), head
