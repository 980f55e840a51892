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

from sky_train.checkpoint import CheckpointSaver, RunTotals, load_latest_checkpoint
from sky_train.config import SkyTrainConfig, to_config
from sky_train.data import Sample
from sky_train.dist import all_reduce, init_distributed
from sky_train.hf_io import check_model_dir, load_pretrained_shards, save_hf
from sky_train.metrics import JsonlLogger, device_peak_flops, peak_memory_gb, training_flops
from sky_train.model import (
    SFTModel, build_meta_model, count_params, load_full_state_dict, load_model_config, load_tokenizer,
    pick_attn_implementation,
)
from sky_train.optim import build_optimizer, lr_at
from sky_train.packing import MicroBatch, collate_rows, cu_seqlens, plan_micro_batches, split_across_ranks
from sky_train.parallel import apply_activation_checkpointing, apply_fsdp, load_sharded_weights, materialize_shards
from sky_train.run_dir import claim_run_dir, plan_run, trim_metrics
from sky_train.token_cache import load_samples


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
    info = init_distributed(cfg.device, cfg.fsdp.replicate, cfg.train.cpu_threads)
    device = info.device
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.run_dir)
    # Rank 0 reads the folder and decides: start, resume, or nothing to do (run_dir.py). A folder holding a
    # run with other settings stops every rank here, naming the differences. Nothing is written before
    # claim_run_dir below, so a start that fails leaves the folder as it was.
    plan = plan_run(run_dir, cfg)
    if plan.action == "finished":
        if info.is_main:
            print(f"[sky_train] {run_dir} holds this run, finished ({plan.summary['steps']} steps, last loss "
                  f"{plan.summary['last_loss']:.4f}): nothing to do (train.overwrite=true trains it again)", flush=True)
        return TrainResult(**{k: v for k, v in plan.summary.items() if k in TrainResult.__dataclass_fields__},
                           losses=[])

    # ---- data -------------------------------------------------------------------------------------------
    check_model_dir(cfg.model.name_or_path, cfg.model.pretrained, cfg.model.tokenizer)  # before the tokenizer
    tokenizer = load_tokenizer(cfg.model)
    # Rank 0 tokenizes once into <cache_dir>/<hash of data, tokenizer, template, cutoff>/ (or finds it there: a
    # resumed run, another point of the sweep); every rank then memory-maps the flat token arrays, and each
    # Sample is a view into them (token_cache.py). Collective: the other ranks wait for rank 0.
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir.parent / ".token_cache"
    samples, report = load_samples(cfg.data, tokenizer, cache_dir, progress=info.is_main)
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
    materialize_shards(model, device, cfg.fsdp.cpu_offload)  # this rank's shards (on the CPU with offload)
    resuming = plan.action == "resume"  # then the checkpoint brings the weights (rank 0 decided, for all)
    if not resuming and cfg.model.name_or_path is not None and cfg.model.pretrained:
        # Every rank reads only its own rows of each tensor: no process ever holds the whole model.
        load_pretrained_shards(model, cfg.model.name_or_path)
    elif not resuming:  # random init (tiny default, model.pretrained=false): rank 0 draws it all, broadcasts
        load_sharded_weights(model, load_full_state_dict(cfg.model, model_config, cfg.seed) if info.is_main else None)
    n_params, n_body, n_head = count_params(model_config)
    varlen = attn not in ("sdpa", "eager")  # varlen kernels take cu_seqlens instead of a mask

    # ---- optimizer --------------------------------------------------------------------------------------
    o = cfg.optim
    # Fused AdamW keeps a 32B model's CPU-offloaded optimiser step bearable (3-10x the foreach step there).
    optimizer = build_optimizer(model, o.lr, o.weight_decay, o.betas, o.eps, o.fused)

    # ---- resume -----------------------------------------------------------------------------------------
    # Rank 0 picks the newest usable checkpoint and broadcasts it; a broken one is named and every rank falls
    # back to the previous one (checkpoint.py). Its trainer_state.json carries the run's totals so far.
    loaded = load_latest_checkpoint(run_dir, model, optimizer) if resuming else None
    start_step, totals = (loaded.step, loaded.totals) if loaded else (0, RunTotals())
    if info.is_main:
        claim_run_dir(run_dir, plan, cfg)  # config.yaml and run.json, now that data, model and checkpoint are found
        trim_metrics(run_dir / "metrics.jsonl", start_step)  # drop steps logged after the checkpoint
    saver = CheckpointSaver(run_dir, cfg.train.keep_checkpoints, cfg.train.async_save, device, cfg.fsdp.cpu_offload)

    peak_flops = device_peak_flops(device, cfg.metrics.peak_flops)
    wandb_run = _init_wandb(cfg) if cfg.metrics.wandb and info.is_main else None
    logger = JsonlLogger(run_dir / "metrics.jsonl") if info.is_main else None
    if info.is_main:
        print(
            f"[sky_train] {n_params / 1e6:.1f}M params, attention={attn}, world={info.world_size}, device={device}, "
            f"threads={torch.get_num_threads()}, "
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
        # The loss's denominator: the batch's label tokens ("token"), or its samples ("sample", each token
        # then weighted by 1 / its sample's label tokens). FSDP averages gradients over ranks; scaling by
        # world_size turns that into the sum we want.
        per_sample = cfg.train.loss_weighting == "sample"
        denominator = len(batch) if per_sample else global_label_tokens
        scale = info.world_size / denominator

        lr = lr_at(step, total_steps, o.lr, o.warmup_ratio, o.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # Accumulated on the device and read once per step: no host sync per micro-batch.
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        for i in range(n_micro):
            real = i < len(micro_batches)
            mb = micro_batches[i] if real else _dummy_micro_batch(pad_id)
            # Reduce-scatter after every micro-batch (sharded gradients in between), unless the opt-in
            # no-sync mode keeps unsharded gradients until the last one.
            model.set_requires_gradient_sync(cfg.fsdp.sync_every_micro_batch or i == n_micro - 1)
            kwargs = _varlen_kwargs(mb, device) if varlen else {}
            weights = (1.0 / mb.label_doc_tokens.double()).float().to(device) if per_sample else None
            mb_loss = model(
                mb.input_ids.to(device), mb.position_ids.to(device), mb.labels.to(device),
                mb.label_positions.to(device), weights, **kwargs,
            )
            (mb_loss * (scale if real else 0.0)).backward()
            if real:
                loss_sum += mb_loss.detach()

        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.max_grad_norm)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        # One collective for the step's numbers: loss sum, computed (rows x width) tokens, rows.
        loss_total, step_computed, step_rows = all_reduce(
            [float(loss_sum), sum(mb.input_ids.numel() for mb in micro_batches),
             sum(mb.input_ids.shape[0] for mb in micro_batches)], "sum", device)
        loss = loss_total / denominator
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
            # Staged (copied) here, seconds; written in the background while the next steps run.
            saver.save(step + 1, model, optimizer,
                       totals.plus(len(losses), total_tokens, computed_tokens, total_time, losses[0]))
    bar.close()
    saver.close()  # the last background save is written and renamed into place before the export

    # ---- export -----------------------------------------------------------------------------------------
    hf_dir = None
    if cfg.train.export_hf:
        dtype = torch.bfloat16 if cfg.fsdp.mixed_precision == "bf16" else torch.float32
        # Collective: every rank gathers tensor by tensor; rank 0 writes each file as the tensors arrive.
        out = save_hf(model, model_config, tokenizer, run_dir / "hf", type(lm).__name__, dtype,
                      base_dir=cfg.model.name_or_path, assistant_end=cfg.data.assistant_end)
        hf_dir = str(out) if out is not None else None

    # The whole run, the parts before a resume included (their totals came with the checkpoint).
    run = totals.plus(len(losses), total_tokens, computed_tokens, total_time, losses[0] if losses else None)
    efficiency = run.tokens / run.computed_tokens if run.computed_tokens else 1.0
    result = TrainResult(
        run_dir=str(run_dir), steps=total_steps, resumed_from=start_step, tokens=run.tokens,
        tokens_per_s=run.tokens / run.time_s if run.time_s else 0.0,
        first_loss=run.first_loss if run.first_loss is not None else float("nan"),
        last_loss=losses[-1] if losses else float("nan"),
        losses=losses, hf_dir=hf_dir, packing_efficiency=efficiency, truncated=report.truncated,
        dropped=report.dropped,
    )
    if info.is_main:
        summary = {k: v for k, v in asdict(result).items() if k != "losses"}
        (run_dir / "summary.json.tmp").write_text(json.dumps(summary, indent=2))
        (run_dir / "summary.json.tmp").replace(run_dir / "summary.json")  # atomic: it marks the run finished
        resumed = f" (resumed after step {start_step})" if start_step else ""
        print(
            f"[sky_train] done: {result.steps} steps{resumed}, {result.tokens} tokens, {result.tokens_per_s:.0f} tokens/s, "
            f"loss {result.first_loss:.4f} -> {result.last_loss:.4f}, packing efficiency {efficiency:.1%}\n"
            f"[sky_train] outputs: {run_dir}/metrics.jsonl" + (f", {hf_dir}/" if hf_dir else ""),
            flush=True,
        )
        if logger is not None:
            logger.close()
        if cfg.metrics.plot:  # <run_dir>/loss.png; without matplotlib, one line saying how to install it
            from sky_train.plot import plot_at_end_of_run

            plot_at_end_of_run(run_dir)
        if wandb_run is not None:
            wandb_run.finish()
    dist.barrier()  # no rank starts another job (a sweep's next point) while others still export
    return result


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
