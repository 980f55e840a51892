"""The SFT loss: summed token cross-entropy over assistant tokens, normalised by the global token count.

With L_i the summed CE of micro-batch i on rank r and N the number of label tokens in the whole global batch
(all micro-batches, all ranks), the step's loss is  sum_{r,i} L_{r,i} / N.  Each micro-batch backpropagates
L_{r,i} / N, so the accumulated gradient is exactly that of the unpacked, single-process mean over the
batch's tokens, whatever the packing, the accumulation or the world size (the usual per-micro-batch mean
weights a short micro-batch's tokens more than a long one's).

`train.loss_weighting=sample` gives every sample the same weight instead, as the original recipe's HF Trainer
did with one sample per micro-batch: with B samples in the global batch and n_s label tokens in sample s, the
loss is  (1/B) sum_s (1/n_s) sum_{t in s} CE_t.  Each labelled token then carries the weight 1/n_s of its
sample (`MicroBatch.label_doc_tokens`) and the step divides by B instead of N; packing and accumulation
still do not change the result.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from sky_train.data import IGNORE_INDEX


def chunked_cross_entropy_sum(
    hidden: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    labels: torch.Tensor,
    chunk_tokens: int,
    positions: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum of CE(head(hidden), labels) over positions whose label is not IGNORE_INDEX, each times its weight.

    hidden: (..., H); labels: (...) already shifted. Only labelled positions go through the head, and the
    logits of one chunk at a time exist (recomputed in backward): at 16K tokens x 152K vocab the full fp32
    logits would be 10 GB, plus as much again for their gradient.

    positions: the flat indices of the labelled positions, computed on the host when the batch is collated
    (`MicroBatch.label_positions`); without it they are found here with a `nonzero`, which on a GPU makes the
    host wait for the device mid-forward. weights: one per labelled position (None: all 1), e.g. 1 / the
    sample's label count for per-sample loss weighting.
    """
    flat_y = labels.reshape(-1)
    if positions is None:
        positions = (flat_y != IGNORE_INDEX).nonzero().squeeze(1)
    h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)  # (N, H)
    y = flat_y.index_select(0, positions)  # (N,)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, h.shape[0], chunk_tokens):
        end = start + chunk_tokens
        w = None if weights is None else weights[start:end]
        total = total + checkpoint(_ce_sum, head, h[start:end], y[start:end], w, use_reentrant=False)
    return total


def _ce_sum(
    head: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None
) -> torch.Tensor:
    logits = head(h).float()
    if w is None:
        return F.cross_entropy(logits, y, reduction="sum")
    return (F.cross_entropy(logits, y, reduction="none") * w).sum()


def reference_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Plain mean CE over labelled positions of pre-shifted labels; the reference the tests compare to."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)
