"""The SFT loss: summed token cross-entropy over assistant tokens, normalised by the global token count.

With L_i the summed CE of micro-batch i on rank r and N the number of label tokens in the whole global batch
(all micro-batches, all ranks), the step's loss is  sum_{r,i} L_{r,i} / N.  Each micro-batch backpropagates
L_{r,i} / N, so the accumulated gradient is exactly that of the unpacked, single-process mean over the
batch's tokens, whatever the packing, the accumulation or the world size (the usual per-micro-batch mean
weights a short micro-batch's tokens more than a long one's).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from sky_train.data import IGNORE_INDEX


def chunked_cross_entropy_sum(
    hidden: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor], labels: torch.Tensor, chunk_tokens: int
) -> torch.Tensor:
    """Sum of CE(head(hidden), labels) over positions whose label is not IGNORE_INDEX.

    hidden: (..., H); labels: (...) already shifted. Only labelled positions go through the head, and the
    logits of one chunk at a time exist (recomputed in backward): at 16K tokens x 152K vocab the full fp32
    logits would be 10 GB, plus as much again for their gradient.
    """
    keep = labels.reshape(-1) != IGNORE_INDEX
    h = hidden.reshape(-1, hidden.shape[-1])[keep]  # (N, H)
    y = labels.reshape(-1)[keep]  # (N,)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, h.shape[0], chunk_tokens):
        total = total + checkpoint(
            _ce_sum, head, h[start : start + chunk_tokens], y[start : start + chunk_tokens], use_reentrant=False
        )
    return total


def _ce_sum(head: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(h).float(), y, reduction="sum")


def reference_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Plain mean CE over labelled positions of pre-shifted labels; the reference the tests compare to."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)
