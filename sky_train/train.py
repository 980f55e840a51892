"""The SFT training loop: setup -> data -> model -> optimizer -> loop -> export, top to bottom.

    python -m sky_train                                  # the embedded default, on CPU, ~1-2 minutes
    torchrun --nproc_per_node 8 -m sky_train +experiment=sky_t1_32b data.path=...
    from sky_train import train; train(cfg)              # cfg: SkyTrainConfig, DictConfig or nested dict

One optimiser step consumes `train.global_batch_size` samples. They are split between ranks balanced by
tokens, packed (or not) into micro-batches on each rank, and their gradients accumulated; the loss is the
token-sum CE over the global batch's assistant tokens (loss.py), so results do not depend on the packing,
the accumulation or the world size.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from tqdm import tqdm

from sky_train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, save_hf
from sky_train.config import SkyTrainConfig, to_config
from sky_train.data import Sample, build_samples, load_conversations
from sky_train.dist import all_reduce, init_distributed
from sky_train.metrics import JsonlLogger, device_peak_flops, peak_memory_gb, training_flops
from sky_train.model import (
    SFTModel, build_meta_model, count_params, load_full_state_dict, load_model_config, load_tokenizer,
    pick_attn_implementation,
)
from sky_train.optim import build_optimizer, lr_at
from sky_train.packing import MicroBatch, collate_rows, cu_seqlens, plan_micro_batches, split_across_ranks
from sky_train.parallel import apply_activation_checkpointing, apply_fsdp, gather_full_state_dict, load_sharded_weights


@dataclass
class TrainResult:
    run_dir: str
    steps: int  # optimiser steps of the whole run
    resumed_from: int  # steps already done by a checkpoint this process resumed from (0: fresh start)
    losses: list[float]  # the losses of the steps this process ran
    tokens: int  # real (non-padding) tokens trained on, all ranks
    tokens_per_s: float
    first_loss: float
    last_loss: float
    hf_dir: str | None
    packing_efficiency: float
    truncated: int
    dropped: int


def step_indices(step: int, num_samples: int, global_batch_size: int, seed: int, shuffle: bool) -> list[int]:
    """The sample indices of optimiser step `step`: epochs are consecutive passes over a per-epoch
    permutation (seeded by seed and epoch, identical on every rank); the last batch of an epoch may be short."""
    per_epoch = math.ceil(num_samples / global_batch_size)
    epoch, k = divmod(step, per_epoch)
    order = list(range(num_samples))
    if shuffle:
        random.Random(seed * 100_003 + epoch).shuffle(order)
    return order[k * global_batch_size : (k + 1) * global_batch_size]


def train(cfg: SkyTrainConfig | Any) -> TrainResult:
    cfg = cfg if isinstance(cfg, SkyTrainConfig) else to_config(cfg)

    # ---- setup ------------------------------------------------------------------------------------------
    info = init_distributed(cfg.device)
    device = info.device
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.run_dir)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))

    # ---- data -------------------------------------------------------------------------------------------
    tokenizer = load_tokenizer(cfg.model)
    conversations = load_conversations(cfg.data.path, cfg.data.split, cfg.data.default_system, cfg.data.max_samples)
    samples, report = build_samples(
        conversations, tokenizer, cfg.data.max_seq_len, cfg.data.assistant_end, progress=info.is_main
    )
    steps_per_epoch = math.ceil(len(samples) / cfg.train.global_batch_size)
    total_steps = cfg.train.max_steps or cfg.train.epochs * steps_per_epoch
    pad_id = tokenizer.pad_token_id

    # ---- model ------------------------------------------------------------------------------------------
    model_config = load_model_config(cfg.model)
    if cfg.model.name_or_path is None:  # the tiny default takes its special ids from the embedded tokenizer
        model_config.eos_token_id, model_config.pad_token_id = tokenizer.eos_token_id, pad_id
    attn = pick_attn_implementation(cfg.model.attn_implementation, device, cfg.fsdp.mixed_precision)
    lm = build_meta_model(model_config, attn)
    model = SFTModel(lm, cfg.train.loss_chunk_tokens)
    if cfg.fsdp.activation_checkpointing:
        apply_activation_checkpointing(model)
    apply_fsdp(model, info.mesh, cfg.fsdp.mixed_precision, cfg.fsdp.cpu_offload, cfg.fsdp.reshard_after_forward)
    full_sd = load_full_state_dict(cfg.model, model_config, cfg.seed) if info.is_main else None
    load_sharded_weights(model, full_sd, device, cfg.fsdp.cpu_offload)
    del full_sd
    n_params, n_body, n_head = count_params(model_config)
    varlen = attn not in ("sdpa", "eager")  # varlen kernels take cu_seqlens instead of a mask

    # ---- optimizer --------------------------------------------------------------------------------------
    o = cfg.optim
    # Fused AdamW keeps a 32B model's CPU-offloaded optimiser step bearable (3-10x the foreach step there).
    optimizer = build_optimizer(model, o.lr, o.weight_decay, o.betas, o.eps, o.fused)

    # ---- resume -----------------------------------------------------------------------------------------
    checkpoints = list_checkpoints(run_dir) if cfg.train.resume else []
    start_step = load_checkpoint(checkpoints[-1], model, optimizer) if checkpoints else 0
    if info.is_main:
        _trim_metrics(run_dir / "metrics.jsonl", start_step)  # drop steps logged after the checkpoint

    peak_flops = device_peak_flops(device, cfg.metrics.peak_flops)
    wandb_run = _init_wandb(cfg) if cfg.metrics.wandb and info.is_main else None
    logger = JsonlLogger(run_dir / "metrics.jsonl") if info.is_main else None
    if info.is_main:
        print(
            f"[sky_train] {n_params / 1e6:.1f}M params, attention={attn}, world={info.world_size}, device={device}, "
            f"{report.samples} samples ({report.truncated} truncated at {cfg.data.max_seq_len} tokens, "
            f"{report.dropped} dropped), {total_steps} steps x {cfg.train.global_batch_size} samples",
            flush=True,
        )

    # ---- loop -------------------------------------------------------------------------------------------
    losses: list[float] = []
    total_tokens, total_time, computed_tokens = 0, 0.0, 0
    bar = tqdm(total=total_steps, initial=start_step, desc="train", disable=not info.is_main, dynamic_ncols=True)
    for step in range(start_step, total_steps):
        t0 = time.perf_counter()
        batch = [samples[i] for i in step_indices(step, len(samples), cfg.train.global_batch_size, cfg.seed, cfg.data.shuffle)]
        share = split_across_ranks([len(s) for s in batch], info.world_size)[info.rank]
        micro_batches = plan_micro_batches(
            [batch[i] for i in share], cfg.data.max_seq_len, cfg.train.micro_batch_size, cfg.data.packing, pad_id,
            cfg.data.group_by_length,
        )
        # Every rank must run the same number of forward/backward passes (FSDP communicates in each): pad
        # with dummy micro-batches whose loss is multiplied by 0, so every parameter still gets a gradient.
        n_micro = int(all_reduce([len(micro_batches)], "max", device)[0])
        global_label_tokens = sum(s.num_label_tokens for s in batch)  # same on every rank: all see `batch`
        # FSDP averages gradients over ranks; scaling by world_size turns that into the sum we want.
        scale = info.world_size / global_label_tokens

        lr = lr_at(step, total_steps, o.lr, o.warmup_ratio, o.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), dtype=torch.float64)
        for i in range(n_micro):
            real = i < len(micro_batches)
            mb = micro_batches[i] if real else _dummy_micro_batch(pad_id)
            # Reduce-scatter gradients only after the last micro-batch of the step.
            model.set_requires_gradient_sync(i == n_micro - 1)
            kwargs = _varlen_kwargs(mb, device) if varlen else {}
            mb_loss = model(
                mb.input_ids.to(device), mb.position_ids.to(device), mb.labels.to(device), **kwargs
            )
            (mb_loss * (scale if real else 0.0)).backward()
            if real:
                loss_sum += mb_loss.detach().double().cpu()

        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.max_grad_norm)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        # One collective for the step's numbers: loss sum, computed (rows x width) tokens, rows.
        loss_total, step_computed, step_rows = all_reduce(
            [loss_sum.item(), sum(mb.input_ids.numel() for mb in micro_batches),
             sum(mb.input_ids.shape[0] for mb in micro_batches)], "sum", device)
        loss = loss_total / global_label_tokens
        dt = time.perf_counter() - t0  # the collective above waited for every rank's step
        doc_lens = [len(s) for s in batch]
        step_tokens = sum(doc_lens)
        flops = training_flops(doc_lens, global_label_tokens, n_body, n_head, model_config.num_hidden_layers,
                               model_config.hidden_size)
        losses.append(loss)
        total_tokens += step_tokens
        total_time += dt
        computed_tokens += int(step_computed)
        record = {
            "step": step + 1, "epoch": step // steps_per_epoch, "loss": loss, "lr": lr,
            "grad_norm": float(grad_norm), "tokens": step_tokens, "label_tokens": global_label_tokens,
            "micro_batches": n_micro, "rows": int(step_rows), "packing_efficiency": step_tokens / step_computed,
            "tokens_per_s": step_tokens / dt,
            "mfu": flops / dt / (peak_flops * info.world_size) if peak_flops else None,
            "peak_mem_gb": peak_memory_gb(device), "step_time_s": dt,
        }
        if info.is_main:
            if (step + 1) % cfg.train.log_every == 0 or step + 1 == total_steps:
                logger.log(record)  # type: ignore[union-attr]
                if wandb_run is not None:
                    wandb_run.log({f"train/{k}": v for k, v in record.items() if v is not None}, step=step + 1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{step_tokens / dt:.0f}")
            bar.update()
        if cfg.train.save_every and (step + 1) % cfg.train.save_every == 0 and step + 1 < total_steps:
            save_checkpoint(run_dir, step + 1, model, optimizer, cfg.train.keep_checkpoints)
    bar.close()

    # ---- export -----------------------------------------------------------------------------------------
    hf_dir = None
    if cfg.train.export_hf:
        full = gather_full_state_dict(model)  # collective: every rank takes part, rank 0 receives
        if info.is_main:
            dtype = torch.bfloat16 if cfg.fsdp.mixed_precision == "bf16" else torch.float32
            hf_dir = str(save_hf(full, model_config, tokenizer, run_dir / "hf", type(lm).__name__, dtype))
        del full

    efficiency = total_tokens / computed_tokens if computed_tokens else 1.0
    result = TrainResult(
        run_dir=str(run_dir), steps=total_steps, resumed_from=start_step, tokens=total_tokens,
        tokens_per_s=total_tokens / total_time if total_time else 0.0,
        first_loss=losses[0] if losses else float("nan"), last_loss=losses[-1] if losses else float("nan"),
        losses=losses, hf_dir=hf_dir, packing_efficiency=efficiency, truncated=report.truncated,
        dropped=report.dropped,
    )
    if info.is_main:
        summary = {k: v for k, v in asdict(result).items() if k != "losses"}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        resumed = f" (resumed after step {start_step})" if start_step else ""
        print(
            f"[sky_train] done: {result.steps} steps{resumed}, {result.tokens} tokens, {result.tokens_per_s:.0f} tokens/s, "
            f"loss {result.first_loss:.4f} -> {result.last_loss:.4f}, packing efficiency {efficiency:.1%}\n"
            f"[sky_train] outputs: {run_dir}/metrics.jsonl" + (f", {hf_dir}/" if hf_dir else ""),
            flush=True,
        )
        if logger is not None:
            logger.close()
        if wandb_run is not None:
            wandb_run.finish()
    dist.barrier()  # no rank starts another job (a sweep's next point) while others still export
    return result


def _trim_metrics(path: Path, done_steps: int) -> None:
    """Keep the logged steps up to `done_steps` (those a resumed run will not redo); atomically."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= done_steps]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    tmp.replace(path)


def _dummy_micro_batch(pad_id: int) -> MicroBatch:
    """One padding token with one label, so the forward touches every parameter (the LM head included)."""
    return collate_rows([[Sample([pad_id], [pad_id], "<dummy>")]], pad_id)


def _varlen_kwargs(mb: MicroBatch, device: torch.device) -> dict[str, Any]:
    cu, max_len = cu_seqlens(mb.doc_lens)
    cu = cu.to(device)
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max_len, "max_length_k": max_len}


def _init_wandb(cfg: SkyTrainConfig) -> Any:
    import wandb

    return wandb.init(project=cfg.metrics.wandb_project, name=cfg.run_name, dir=cfg.run_dir,
                      config=OmegaConf.to_container(OmegaConf.structured(cfg)))
