"""The varlen attention path against transformers' SDPA path with its block-diagonal packed mask: the CPU
per-document kernel as it runs by default, the plumbing (layouts, GQA, cu_seqlens) with a hand-written
reference kernel, and torch's flash varlen kernel itself on a GPU."""

import pytest
import torch
import torch.nn.functional as F

from sky_train import attention
from sky_train.data import Sample, shift_labels
from sky_train.model import SFTModel
from sky_train.packing import collate_rows, cu_seqlens
from sky_train.train import _varlen_kwargs


def reference_kernel(q, k, v, cu_q, cu_k, max_q, max_k, scale, enable_gqa):
    """Causal attention document by document: (N, H, D) packed layout in and out."""
    out = torch.empty_like(q)
    bounds = cu_q.tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        qq, kk, vv = (x[a:b].transpose(0, 1) for x in (q, k, v))  # (H, L, D)
        if enable_gqa:
            rep = qq.shape[0] // kk.shape[0]
            kk, vv = kk.repeat_interleave(rep, 0), vv.repeat_interleave(rep, 0)
        out[a:b] = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, scale=scale).transpose(0, 1)
    return out


def _models(attn):
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    # One config object each: from_config records the attention implementation on the config it is given.
    ref = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    other = AutoModelForCausalLM.from_config(Qwen2Config(**cfg.to_dict()), attn_implementation=attn)
    other.load_state_dict(ref.state_dict())
    return SFTModel(ref, 16), SFTModel(other, 16)


def _packed_batch():
    g = torch.Generator().manual_seed(1)
    rows = []
    for lens in ((5, 9, 3), (11, 4)):
        row = []
        for n in lens:
            ids = torch.randint(0, 64, (n,), generator=g).tolist()
            row.append(Sample(ids, shift_labels(ids, [True] * n), "t"))
        rows.append(row)
    return collate_rows(rows, pad_id=0)


@pytest.mark.parametrize("kernel", ["default", "reference"])
def test_varlen_path_matches_sdpa_packed_mask(monkeypatch, kernel):
    if kernel == "reference":
        monkeypatch.setattr(attention, "kernel", reference_kernel)
    sdpa, varlen = _models(attention.register_varlen_attention())
    mb = _packed_batch()
    assert cu_seqlens(mb.doc_lens)[0].tolist() == [0, 5, 14, 17, 28, 32, 34]  # row 0 padded with 2 tokens
    loss_ref = sdpa(mb.input_ids, mb.position_ids, mb.labels)
    loss = varlen(mb.input_ids, mb.position_ids, mb.labels, **_varlen_kwargs(mb, torch.device("cpu")))
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-5)
    loss_ref.backward()
    loss.backward()
    for (name, p), q in zip(sdpa.named_parameters(), varlen.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_varlen_path_without_boundaries_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(attention, "kernel", reference_kernel)
    _, varlen = _models(attention.register_varlen_attention())
    mb = _packed_batch()
    with pytest.raises(ValueError, match="cu_seq_lens_q"):
        varlen(mb.input_ids, mb.position_ids, mb.labels)


@pytest.mark.gpu
def test_torch_varlen_kernel_matches_reference_on_gpu():
    """On a lent GPU: the real flash varlen kernel in bf16 against the per-document reference."""
    torch.manual_seed(0)
    cu = torch.tensor([0, 7, 20, 64], dtype=torch.int32, device="cuda")
    q = torch.randn(64, 8, 64, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(64, 2, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    got = attention._torch_varlen_kernel(q, k, v, cu, cu, 44, 44, 64**-0.5, True)
    want = reference_kernel(q.float(), k.float(), v.float(), cu, cu, 44, 44, 64**-0.5, True)
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)
