"""Throughput, model FLOPs utilisation, memory, and the metrics.jsonl writer."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any, TextIO

import torch

# Dense bf16 tensor-core peak per device (no sparsity), from the vendors' data sheets.
PEAK_BF16_FLOPS = {
    "H100": 989e12,  # SXM; the PCIe card is 756e12
    "H200": 989e12,
    "H800": 989e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "B200": 2250e12,
}


def device_peak_flops(device: torch.device, override: float | None = None) -> float | None:
    """Peak FLOP/s of one device for MFU: the configured value, a known GPU's, or None (unknown, e.g. CPU)."""
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    if "H100" in name and "PCIe" in name:
        return 756e12
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None


def training_flops(doc_lens: list[int], label_tokens: int, n_body: int, n_head: int, n_layers: int, hidden: int) -> float:
    """Model FLOPs of forward + backward over documents of the given lengths (recompute not counted).

    6 FLOPs per weight per token (2 forward, 4 backward): the body's weights (N excludes the embedding lookup)
    see every token, the LM head only the labelled ones (sky_train never computes the other logits). Causal
    attention adds, per layer and document of L tokens, QK^T and AV at 2 * 2 * L^2 * hidden forward, halved
    by causality, times 3 for forward + backward: 6 * L^2 * hidden.
    """
    attn = sum(6 * n * n * hidden * n_layers for n in doc_lens)
    return 6.0 * (n_body * sum(doc_lens) + n_head * label_tokens) + attn


def peak_memory_gb(device: torch.device) -> float:
    """Peak allocated accelerator memory; on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (1e9 if sys.platform == "darwin" else 1e6)


class JsonlLogger:
    """Append one JSON object per line and flush, so a crashed run keeps every step it finished."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: TextIO = open(path, "a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()
