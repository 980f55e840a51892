"""The FSDP2 trainer against an independent reference: a plain transformers model trained by a hand-written
unpacked loop (mean CE over the batch's assistant tokens, AdamW, clipping, the same schedule)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from sky_train import to_config, train
from sky_train.data import IGNORE_INDEX, build_samples, load_conversations
from sky_train.model import TINY_QWEN2, load_full_state_dict, load_model_config, load_tokenizer
from sky_train.optim import build_optimizer, lr_at
from sky_train.train import step_indices

SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}


def tiny_cfg(run_dir, **over):
    base = {
        "run_dir": str(run_dir), "seed": 3, "device": "cpu",
        "model": {"tiny": {**TINY_QWEN2, **SMALL}},
        # Rows of 1200 tokens hold two or three of the embedded samples (286-1180 tokens each).
        "data": {"max_seq_len": 1200, "max_samples": 40, "packing": True},
        "train": {"global_batch_size": 8, "micro_batch_size": 1, "max_steps": 4, "loss_chunk_tokens": 64},
        "optim": {"lr": 3e-3, "warmup_ratio": 0.25, "weight_decay": 0.01, "max_grad_norm": 0.5},
        "fsdp": {"mixed_precision": "fp32", "activation_checkpointing": False},
    }
    cfg = to_config(base)
    for key, value in over.items():
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, value)
    return cfg


def reference_run(cfg):
    """Plain transformers, no FSDP, no packing: each sample alone through the model. The loss is the mean
    over the batch's label tokens, or (train.loss_weighting=sample) the mean over its samples of each
    sample's token mean, as HF Trainer computes it with one sample per micro-batch."""
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(cfg.model)
    samples, _ = build_samples(load_conversations(None, max_samples=cfg.data.max_samples), tok, cfg.data.max_seq_len)
    if cfg.model.name_or_path:  # a local HF model directory: transformers' own loader is the reference
        model = AutoModelForCausalLM.from_pretrained(cfg.model.name_or_path, attn_implementation="sdpa", dtype=torch.float32)
    else:
        mc = load_model_config(cfg.model)
        model = AutoModelForCausalLM.from_config(mc, attn_implementation="sdpa", dtype=torch.float32)
        model.load_state_dict(load_full_state_dict(cfg.model, mc, cfg.seed))
    o = cfg.optim
    opt = build_optimizer(model, o.lr, o.weight_decay, o.betas, o.eps, o.fused)
    losses = []
    for step in range(cfg.train.max_steps):
        batch = [samples[i] for i in step_indices(step, len(samples), cfg.train.global_batch_size, cfg.seed, True)]
        n = sum(s.num_label_tokens for s in batch)
        total = 0.0
        for s in batch:
            logits = model(input_ids=torch.tensor([s.input_ids]), use_cache=False).logits[0]
            ce = F.cross_entropy(logits, torch.tensor(s.labels), ignore_index=IGNORE_INDEX, reduction="sum")
            if cfg.train.loss_weighting == "sample":
                ce = ce / s.num_label_tokens * n / len(batch)  # so that ce / n is (sample mean) / B
            (ce / n).backward()
            total += ce.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.max_grad_norm)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.train.max_steps, o.lr, o.warmup_ratio, o.min_lr_ratio)
        opt.step()
        opt.zero_grad()
        losses.append(total / n)
    return losses, model


@pytest.mark.parametrize("packing,micro,attn", [(True, 1, "auto"), (True, 2, "sdpa"), (False, 3, "auto")])
def test_trainer_matches_plain_transformers_reference(tmp_path, packing, micro, attn):
    """auto: the per-document varlen path; sdpa: transformers' block-diagonal mask from position_ids."""
    cfg = tiny_cfg(tmp_path / "run")
    cfg.data.packing, cfg.train.micro_batch_size, cfg.model.attn_implementation = packing, micro, attn
    result = train(cfg)
    ref_losses, ref_model = reference_run(cfg)
    torch.testing.assert_close(result.losses, ref_losses, rtol=2e-5, atol=2e-5)
    assert result.losses[-1] < result.losses[0]
    rows = [json.loads(line)["rows"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    if packing:  # the comparison only means something if rows really hold several documents
        assert sum(rows) < cfg.train.max_steps * cfg.train.global_batch_size
    else:
        assert sum(rows) == cfg.train.max_steps * cfg.train.global_batch_size

    # The exported model loads back with plain transformers and gives the reference model's logits.
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(result.hf_dir, dtype=torch.float32)
    ids = torch.randint(0, 1024, (2, 37), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, ref_model(input_ids=ids).logits, rtol=1e-4, atol=1e-4)


def test_metrics_jsonl_has_one_record_per_step(tmp_path):
    result = train(tiny_cfg(tmp_path / "run", **{"train.max_steps": 3}))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu", "peak_mem_gb"):
        assert key in rows[0], key
    assert rows[0]["mfu"] is None  # no known peak FLOP/s on a CPU
    assert [r["loss"] for r in rows] == pytest.approx(result.losses)
    assert all(0 < r["packing_efficiency"] <= 1 for r in rows)
    assert math.isclose(rows[0]["lr"], lr_at(0, 3, 3e-3, 0.25))


def test_trains_a_local_hf_model_dir_with_sharded_bf16_tied_weights(tmp_path):
    """model.name_or_path: a directory as a hub download looks (sharded bf16 safetensors with an index, tied
    embeddings, tokenizer with chat template), written here; the reference loads it with from_pretrained."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    from sky_train.embedded import load_tiny_tokenizer

    torch.manual_seed(5)
    config = Qwen2Config(**{**TINY_QWEN2, **SMALL, "tie_word_embeddings": True})
    model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "model", max_shard_size="100KB")
    load_tiny_tokenizer().save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors.index.json").exists()

    cfg = tiny_cfg(tmp_path / "run", **{"train.max_steps": 3})
    cfg.model.name_or_path = str(tmp_path / "model")
    result = train(cfg)
    ref_losses, ref_model = reference_run(cfg)
    torch.testing.assert_close(result.losses, ref_losses, rtol=2e-5, atol=2e-5)

    exported = AutoModelForCausalLM.from_pretrained(result.hf_dir, dtype=torch.float32)
    assert exported.config.tie_word_embeddings
    ids = torch.randint(0, 1024, (1, 29), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, ref_model(input_ids=ids).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("attn", ["sky_varlen", "sdpa"])
def test_packed_loss_and_gradients_equal_each_sample_alone(attn):
    """One packed micro-batch through SFTModel vs the plain transformers forward of each sample on its own:
    the same token-mean loss and the same gradient for every parameter."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    from sky_train.attention import register_varlen_attention
    from sky_train.model import SFTModel
    from sky_train.packing import plan_micro_batches
    from sky_train.train import _varlen_kwargs

    tok = load_tokenizer(to_config({}).model)
    samples, _ = build_samples(load_conversations(None, max_samples=7), tok, 1200)
    register_varlen_attention()
    cfg = dict(TINY_QWEN2, **SMALL)
    torch.manual_seed(0)
    ref = AutoModelForCausalLM.from_config(Qwen2Config(**cfg), attn_implementation="sdpa")
    lm = AutoModelForCausalLM.from_config(Qwen2Config(**cfg), attn_implementation=attn)
    lm.load_state_dict(ref.state_dict())
    packed = SFTModel(lm, loss_chunk_tokens=100)

    n = sum(s.num_label_tokens for s in samples)
    ref_loss = 0.0
    for s in samples:
        logits = ref(input_ids=torch.tensor([s.input_ids]), use_cache=False).logits[0]
        ce = F.cross_entropy(logits, torch.tensor(s.labels), ignore_index=IGNORE_INDEX, reduction="sum") / n
        ce.backward()
        ref_loss += ce.item()

    mbs = plan_micro_batches(samples, 1200, micro_batch_size=2, packing=True, pad_id=tok.pad_token_id)
    assert any(len(lens) > 2 for mb in mbs for lens in mb.doc_lens)  # rows really hold several documents
    loss = 0.0
    for mb in mbs:
        kwargs = _varlen_kwargs(mb, torch.device("cpu")) if attn == "sky_varlen" else {}
        part = packed(mb.input_ids, mb.position_ids, mb.labels, **kwargs) / n
        part.backward()
        loss += part.item()

    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for (name, p_ref), p in zip(ref.named_parameters(), lm.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-6, msg=name)
