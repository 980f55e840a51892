"""Build or load the causal LM to fine-tune, its tokenizer, and the loss-computing wrapper around it.

No parallelism here (that is `parallel.py`). The model is built on the meta device, so that a 32B model
costs no memory before it is sharded; each rank then reads its own rows of the pretrained weights
(`hf_io.load_pretrained_shards`), or rank 0 draws a random initialisation (`load_full_state_dict`) that
`parallel.load_sharded_weights` broadcasts into the shards.
"""

from __future__ import annotations

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
    """A seeded random initialisation as a full fp32 state dict, keyed like the transformers model (the
    tiny default, or `model.pretrained=false`). Rank 0 alone calls it: it holds the whole model, so it is
    no way to read pretrained weights, which `hf_io.load_pretrained_shards` reads shard by shard."""
    if cfg.name_or_path is not None and cfg.pretrained:
        raise ValueError(f"{cfg.name_or_path}: pretrained weights are read per rank by hf_io.load_pretrained_shards")
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    sd = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32).state_dict()
    if getattr(model_config, "tie_word_embeddings", False):
        # Both names for one tensor, as the sharded model's state dict has them.
        sd.setdefault("lm_head.weight", sd["model.embed_tokens.weight"])
    return {k: v.to(torch.float32) for k, v in sd.items()}


def reset_rotary_buffers(model: nn.Module) -> None:
    """Recompute rotary `inv_freq` buffers, which are non-persistent: `to_empty` leaves them uninitialised
    and no state dict restores them."""
    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding") and hasattr(module, "config"):
            fresh = type(module)(config=module.config)
            for name, buf in fresh.named_buffers():
                getattr(module, name).copy_(buf.to(getattr(module, name).dtype))


class LMHeadLoss(nn.Linear):
    """The LM head (the same nn.Linear: same parameters, same state-dict key) whose forward can also return
    the loss: `head(hidden)` gives logits as before, `head(hidden, labels, positions, weights)` the chunked CE.

    Computing the loss inside the head's own forward lets the head be an FSDP unit of its own: it is
    gathered once for all chunks (and for their recompute in backward), and its gradient is reduce-scattered
    when its backward is done, overlapping the decoder's backward, instead of sitting in the root unit.
    """

    loss_chunk_tokens: int = 4096

    def forward(  # type: ignore[override]
        self,
        hidden: torch.Tensor,
        labels: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if labels is None:
            return super().forward(hidden)
        return chunked_cross_entropy_sum(hidden, self._logits, labels, self.loss_chunk_tokens, positions, weights)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(h, self.weight, self.bias)


class SFTModel(nn.Module):
    """A causal LM whose forward returns the summed (weighted) CE over labelled tokens (see loss.py).

    The LM head runs chunk by chunk on labelled positions only, instead of materialising (B, T, vocab)
    logits. A plain nn.Linear head becomes an `LMHeadLoss` in place, so that FSDP can shard it as its own unit.
    """

    def __init__(self, lm: nn.Module, loss_chunk_tokens: int = 4096) -> None:
        super().__init__()
        self.lm = lm
        self.loss_chunk_tokens = loss_chunk_tokens
        head = lm.get_output_embeddings()
        if type(head) is nn.Linear:
            head.__class__ = LMHeadLoss
            head.loss_chunk_tokens = loss_chunk_tokens

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        labels: torch.Tensor,
        label_positions: torch.Tensor | None = None,
        label_weights: torch.Tensor | None = None,
        **attn_kwargs: Any,
    ) -> torch.Tensor:
        # attention_mask=None + position_ids: transformers builds the per-document causal mask (SDPA), and
        # varlen kernels take cu_seq_lens_* from attn_kwargs.
        out = self.lm.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False, **attn_kwargs)
        head = self.lm.get_output_embeddings()
        if isinstance(head, LMHeadLoss):
            return head(out.last_hidden_state, labels, label_positions, label_weights)
        return chunked_cross_entropy_sum(
            out.last_hidden_state, head, labels, self.loss_chunk_tokens, label_positions, label_weights
        )

    def decoder_layers(self) -> nn.ModuleList:
        return self.lm.get_decoder().layers

    def tied_embeddings(self) -> bool:
        inp, out = self.lm.get_input_embeddings(), self.lm.get_output_embeddings()
        return out is not None and inp.weight is out.weight


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
