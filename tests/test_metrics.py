"""FLOP counting for MFU against published parameter counts and hand arithmetic; the JSONL writer."""

import json

import pytest
import torch
from transformers import Qwen2Config

from sky_train.bench import QWEN2_5_1_5B
from sky_train.metrics import JsonlLogger, device_peak_flops, training_flops
from sky_train.model import count_params

QWEN2_5_32B = dict(vocab_size=152064, hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                   num_attention_heads=40, num_key_value_heads=8, tie_word_embeddings=False)


def test_parameter_counts_match_the_published_qwen2_5_sizes():
    # Qwen2.5-1.5B model card: "1.54B parameters, 1.31B non-embedding" (tied embeddings: the head is the
    # embedding, so the body excludes it once).
    total, body, head = count_params(Qwen2Config(**QWEN2_5_1_5B))
    assert total == pytest.approx(1.54e9, rel=5e-3)
    assert body == pytest.approx(1.31e9, rel=5e-3) and head == 151936 * 1536
    # Qwen2.5-32B: 32.76B counted exactly (NOTES.md); untied, so the body excludes embedding and head.
    total, body, head = count_params(Qwen2Config(**QWEN2_5_32B))
    assert total == pytest.approx(32.76e9, rel=1e-3)
    assert head == 152064 * 5120 and body == total - 2 * head


def test_training_flops_by_hand():
    # Two documents of 3 and 5 tokens, 4 of them labelled; body 10 weights, head 7, 2 layers of width 4.
    # 6 * (10 * 8 + 7 * 4) + 6 * (9 + 25) * 4 * 2 = 648 + 1632.
    assert training_flops([3, 5], 4, 10, 7, 2, 4) == 2280
    # The recipe's scale: NOTES.md's 6N = 197 GFLOP per token counts the embedding lookup as a matmul;
    # without it, 6 * (32.76B - 0.78B) = 191.9 GFLOP for a labelled token (plus attention).
    _, body, head = count_params(Qwen2Config(**QWEN2_5_32B))
    assert training_flops([1], 1, body, head, 64, 5120) / 1e9 == pytest.approx(6 * (32.764 - 0.7786), rel=1e-3)


def test_peak_flops_is_unknown_on_cpu_unless_configured():
    assert device_peak_flops(torch.device("cpu")) is None
    assert device_peak_flops(torch.device("cpu"), 1e12) == 1e12


def test_jsonl_logger_appends_one_flushed_object_per_line(tmp_path):
    log = JsonlLogger(tmp_path / "m.jsonl")
    log.log({"step": 1, "mfu": None})
    # Readable before close: a crashed run keeps the steps it finished.
    assert json.loads((tmp_path / "m.jsonl").read_text()) == {"step": 1, "mfu": None}
    log.log({"step": 2})
    log.close()
    assert [json.loads(x)["step"] for x in (tmp_path / "m.jsonl").read_text().splitlines()] == [1, 2]
