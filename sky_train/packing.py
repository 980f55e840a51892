"""Packing whole samples into rows, and turning rows into tensors.

Pure functions, no torch.distributed. A step's samples are first split between ranks (balanced by tokens),
then each rank packs its share best-fit into rows of at most `max_seq_len` tokens. `position_ids` restart at
0 at every document: transformers turns that into a block-diagonal causal mask (SDPA, CPU) and the varlen
path into `cu_seqlens`, so no token attends across documents. Labels arrive already shifted per document
(see `data.shift_labels`), so no target crosses a document boundary either.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import torch

from sky_train.data import IGNORE_INDEX, Sample


def best_fit_pack(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing bin packing: indices of `lengths` grouped into bins of total <= capacity.

    Longest first, each into the fullest bin it still fits in (the one with the least room left that is
    enough), else a new bin. Within 11/9 OPT + 1 bins; O(n log n) with a sorted list of free space.
    """
    for i, n in enumerate(lengths):
        if n > capacity:
            raise ValueError(f"sample {i} has {n} tokens, more than the row capacity {capacity}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (room left, bin index)
    for i in order:
        k = bisect.bisect_left(free, (lengths[i], -1))
        if k == len(free):
            bins.append([i])
            bisect.insort(free, (capacity - lengths[i], len(bins) - 1))
        else:
            room, b = free.pop(k)
            bins[b].append(i)
            bisect.insort(free, (room - lengths[i], b))
    return bins


def split_across_ranks(lengths: list[int], world_size: int) -> list[list[int]]:
    """Deal samples to ranks so that token counts are balanced (longest first to the least loaded rank).

    Deterministic, so every rank computes the same split from the same lengths.
    """
    shares: list[list[int]] = [[] for _ in range(world_size)]
    load = [0] * world_size
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        r = min(range(world_size), key=lambda r: (load[r], len(shares[r]), r))
        shares[r].append(i)
        load[r] += lengths[i]
    return [sorted(s) for s in shares]


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # (R, T) long
    labels: torch.Tensor  # (R, T) long, shifted, IGNORE_INDEX where no loss
    position_ids: torch.Tensor  # (R, T) long, restarting at 0 at every document (padding is a document)
    doc_lens: list[list[int]]  # per row, the lengths of its documents (padding last), summing to T
    real_tokens: int  # non-padding tokens
    # The flat indices (row * T + t) of the positions with a label, in order: the loss can gather exactly
    # these (labels.view(-1)[label_positions]) without a data-dependent mask, i.e. without a host sync.
    label_positions: torch.Tensor  # (L,) long
    # For each of those positions, the label-token count of its document (sample), for per-sample loss
    # weighting (each sample's token-mean CE: weight 1 / label_doc_tokens). Padding documents have no labels.
    label_doc_tokens: torch.Tensor  # (L,) long

    @property
    def num_label_tokens(self) -> int:
        return int(self.label_positions.numel())


def collate_rows(rows: list[list[Sample]], pad_id: int) -> MicroBatch:
    """Concatenate each row's samples; pad rows to the longest with a padding document.

    Samples may be lists or numpy views into the token cache: they are copied straight into preallocated
    (R, T) arrays, never through Python lists.
    """
    width = max(sum(len(s) for s in row) for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)  # (R, T)
    labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)  # (R, T)
    pos = np.empty((len(rows), width), dtype=np.int64)  # (R, T)
    doc_tokens = np.zeros((len(rows), width), dtype=np.int64)  # (R, T) label tokens of each position's document
    doc_lens = []
    real = 0
    for r, row in enumerate(rows):
        t = 0
        lens = []
        for s in row:
            n = len(s)
            ids[r, t : t + n] = s.input_ids
            labels[r, t : t + n] = s.labels
            pos[r, t : t + n] = np.arange(n)
            doc_tokens[r, t : t + n] = np.count_nonzero(labels[r, t : t + n] != IGNORE_INDEX)
            lens.append(n)
            t += n
        real += t
        if t < width:  # the padding document: pad ids, no labels, positions from 0
            pos[r, t:] = np.arange(width - t)
            lens.append(width - t)
        doc_lens.append(lens)
    label_positions = np.flatnonzero(labels != IGNORE_INDEX)  # row-major: row * T + t, in order
    return MicroBatch(
        input_ids=torch.from_numpy(ids),
        labels=torch.from_numpy(labels),
        position_ids=torch.from_numpy(pos),
        doc_lens=doc_lens,
        real_tokens=real,
        label_positions=torch.from_numpy(label_positions.astype(np.int64)),
        label_doc_tokens=torch.from_numpy(doc_tokens.reshape(-1)[label_positions]),
    )


def plan_micro_batches(
    samples: list[Sample],
    max_seq_len: int,
    micro_batch_size: int,
    packing: bool,
    pad_id: int,
    group_by_length: bool = True,
) -> list[MicroBatch]:
    """One rank's share of a step -> micro-batches of `micro_batch_size` rows.

    packing=True: best-fit rows of up to max_seq_len tokens (several documents a row).
    packing=False: one sample per row, as the original recipe trained; with group_by_length the step's
    samples are sorted longest first so that rows padded together have similar lengths, else they are
    padded in batch order.
    """
    if not samples:
        return []
    if packing:
        rows = [[samples[i] for i in sorted(b)] for b in best_fit_pack([len(s) for s in samples], max_seq_len)]
    else:
        rows = [[s] for s in (sorted(samples, key=len, reverse=True) if group_by_length else samples)]
    return [collate_rows(rows[k : k + micro_batch_size], pad_id) for k in range(0, len(rows), micro_batch_size)]


def packing_efficiency(micro_batches: list[MicroBatch]) -> float:
    """Real tokens / tokens computed (rows x width): 1.0 means no padding at all."""
    computed = sum(mb.input_ids.numel() for mb in micro_batches)
    return sum(mb.real_tokens for mb in micro_batches) / computed if computed else 1.0


def cu_seqlens(doc_lens: list[list[int]]) -> tuple[torch.Tensor, int]:
    """Cumulative document boundaries of the flattened (R*T) micro-batch, for varlen attention kernels."""
    flat = [n for row in doc_lens for n in row]
    cu = torch.zeros(len(flat) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(flat, dtype=torch.int32), 0)
    return cu, max(flat)
