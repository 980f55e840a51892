"""Varlen attention for packed rows: each document attends only to itself, and no cross-document work is done.

Registered with transformers as attn_implementation="sky_varlen". The training step passes
`cu_seq_lens_q/k` and `max_length_q/k` (from `packing.cu_seqlens`) as model kwargs; transformers forwards them
to every attention call and builds no mask for an implementation it does not know.

The kernel: on CUDA, torch's flash-attention varlen kernel (bf16/fp16); elsewhere, causal SDPA document by
document. transformers' own packed path (`sdpa` with a block-diagonal mask built from position_ids) is exact
too, but computes and masks the full (T, T) score matrix of a row: with 2048-token rows of ~450-token
documents that is ~4.5x the attention work, which made packing slower than padding on CPU.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F

NAME = "sky_varlen"


def cuda_varlen_available() -> bool:
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def _torch_varlen_kernel(q, k, v, cu_q, cu_k, max_q, max_k, scale, enable_gqa):  # type: ignore[no-untyped-def]
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    kwargs: dict[str, Any] = {"scale": scale}
    # The causal flag moved from `is_causal` to `window_size=(-1, 0)` across torch releases.
    if "window_size" in params:
        kwargs["window_size"] = (-1, 0)
    else:
        kwargs["is_causal"] = True
    if "enable_gqa" in params:
        kwargs["enable_gqa"] = enable_gqa
    elif enable_gqa:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **kwargs)


def _per_document_sdpa(q, k, v, cu_q, cu_k, max_q, max_k, scale, enable_gqa):  # type: ignore[no-untyped-def]
    """Causal SDPA on each document of the (N, H, D) packed layout; exact, O(sum L^2) instead of O(T^2).

    4-D (1, H, L, D) inputs with `enable_gqa` select the CPU flash kernel, which saves q, k, v, the output and
    the log-sum-exp for backward, as on a GPU; 3-D inputs would take the math path, which keeps an L x L
    fp32 matrix per head (and needs k, v repeated to the query heads).
    """
    bounds = cu_q.tolist()
    outs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        qq, kk, vv = (x[a:b].transpose(0, 1).unsqueeze(0) for x in (q, k, v))  # (1, H, L, D)
        out = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, scale=scale, enable_gqa=enable_gqa)
        outs.append(out[0].transpose(0, 1))
    return torch.cat(outs, dim=0)


def kernel(q, k, v, cu_q, cu_k, max_q, max_k, scale, enable_gqa):  # type: ignore[no-untyped-def]
    # cu_q == cu_k always here (self-attention over the same packed rows).
    impl = _torch_varlen_kernel if q.is_cuda else _per_document_sdpa
    return impl(q, k, v, cu_q, cu_k, max_q, max_k, scale, enable_gqa)


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # (B, Hq, T, D)
    key: torch.Tensor,  # (B, Hkv, T, D)
    value: torch.Tensor,  # (B, Hkv, T, D)
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    if "cu_seq_lens_q" not in kwargs:
        raise ValueError(
            "attn_implementation='sky_varlen' needs cu_seq_lens_q/max_length_q model kwargs (packing.cu_seqlens)"
        )
    b, hq, t, d = query.shape
    hkv = key.shape[1]
    q = query.transpose(1, 2).reshape(b * t, hq, d)  # (B*T, Hq, D): rows are consecutive documents
    k = key.transpose(1, 2).reshape(b * t, hkv, d)
    v = value.transpose(1, 2).reshape(b * t, hkv, d)
    out = kernel(
        q, k, v, kwargs["cu_seq_lens_q"], kwargs.get("cu_seq_lens_k", kwargs["cu_seq_lens_q"]),
        kwargs["max_length_q"], kwargs.get("max_length_k", kwargs["max_length_q"]), scaling, hq != hkv,
    )
    return out.reshape(b, t, hq, d), None  # transformers expects (B, T, H, D)


def register_varlen_attention() -> str:
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, varlen_attention_forward)
    return NAME
