"""Benchmarks of the training step, each printed next to its baseline measured in the same run.

    python -m sky_train.bench                 # packing vs padded micro-batches on the embedded data (CPU ok)
    python -m sky_train.bench --mfu           # GPU: MFU of a Qwen2.5-1.5B-shaped model, 16K packed rows, bf16 + AC
    python -m sky_train.bench --peer          # sky_train vs TRL's SFTTrainer (pip install -e ".[bench]"; CPU ok)

packing: the same samples, model and steps, trained by sky_train with packed rows (data.packing=true,
`--packed-micro` rows a micro-batch) and, as the baseline, with padded micro-batches of `--padded-micro`
samples in batch order (data.packing=false, group_by_length=false); also shown: padded length-grouped
micro-batches, and one sample per micro-batch as Sky-T1 trained. The figure is real (non-padding) tokens
per second, first step excluded as warm-up. Target: packing >= 1.5x the padded baseline on these skewed
lengths.

peer: one saved model directory (a Qwen2 of `--layers` x `--hidden` with the embedded tokenizer, random
weights written by save_pretrained) trained on the shipped Sky-T1 records, the same samples per step and
steps, lr and cosine schedule, cutoff and fp32, by sky_train (its defaults: packed rows, per-document
attention) and by TRL's SFTTrainer (what a user would pick instead) padded, padding-free and packed. The
records go to TRL in its conversational prompt-completion form (prompt = system + user turns, completion =
the assistant turn): loss on the assistant reply only, as sky_train trains. TRL's own `assistant_only_loss`
needs `{% generation %}` markers that this chat template lacks. Both are timed the same way: real
(non-padding) tokens / wall time of steps 2..N (the first step is warm-up). Goal: sky_train >= 2x TRL's best.
On a machine shared with other jobs, `--threads 1` gives steadier figures: with more threads than free cores,
threads that wait for each other at every operator lose whole time slices, and the trainer with the most
small operators loses most.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sky_train.config import to_config
from sky_train.dist import destroy_distributed, usable_cores
from sky_train.model import TINY_QWEN2
from sky_train.optim import warmup_steps
from sky_train.train import train

# Qwen2.5-1.5B's shape (1.54B parameters with tied embeddings).
QWEN2_5_1_5B = dict(
    vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
    num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1e6, tie_word_embeddings=True, rms_norm_eps=1e-6,
)


def _steady(run_dir: Path, skip: int) -> dict[str, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][skip:]
    tokens = sum(r["tokens"] for r in rows)
    seconds = sum(r["step_time_s"] for r in rows)
    mfus = [r["mfu"] for r in rows if r["mfu"] is not None]
    return {
        "tokens_per_s": tokens / seconds,
        # real tokens / computed (rows x width) tokens over the steps
        "packing_efficiency": tokens / sum(r["tokens"] / r["packing_efficiency"] for r in rows),
        "mfu": sum(mfus) / len(mfus) if mfus else float("nan"),
        "peak_mem_gb": max(r["peak_mem_gb"] for r in rows),
        "steps": len(rows),
    }


def bench_packing(args: argparse.Namespace, out: Path) -> None:
    base = {
        "device": args.device, "seed": 0,
        "model": {"tiny": _tiny_shape(args)},
        "data": {"max_seq_len": args.max_seq_len},
        "train": {"global_batch_size": args.batch, "max_steps": args.steps, "export_hf": False},
        "optim": {"lr": 1e-3},
        "fsdp": {"mixed_precision": "fp32", "activation_checkpointing": False},
        "metrics": {"plot": False},
    }
    m = args.padded_micro
    runs = {  # name: (data.packing, train.micro_batch_size, data.group_by_length)
        f"packed x{args.packed_micro}": (True, args.packed_micro, True),
        f"padded x{m}": (False, m, False),  # the baseline: the step's samples padded in batch order
        f"padded x{m}, length-grouped": (False, m, True),  # a stronger baseline: sorted before padding
        "unpadded x1 (the recipe)": (False, 1, True),  # one sample per micro-batch, as Sky-T1 trained
    }
    results = {}
    for name, (packing, micro, grouped) in runs.items():
        run_dir = out / name.split()[0].replace(",", "") / str(micro) / str(grouped)
        cfg = to_config(base, **{"run_dir": str(run_dir), "data.packing": packing, "train.micro_batch_size": micro,
                                 "data.group_by_length": grouped})
        train(cfg)
        results[name] = _steady(run_dir, skip=1)
    print(f"\n== packing benchmark: embedded data, Qwen2 {args.layers} layers x {args.hidden}, "
          f"{args.steps} steps x {args.batch} samples, "
          f"rows of {args.max_seq_len} tokens, device {args.device} ==")
    packed = results[f"packed x{args.packed_micro}"]["tokens_per_s"]
    print(f"{'':30} {'real tokens/s':>14} {'packing eff.':>13} {'packing speed-up':>17}")
    for name, r in results.items():
        print(f"{name:30} {r['tokens_per_s']:14.0f} {r['packing_efficiency']:13.1%} "
              f"{packed / r['tokens_per_s']:16.2f}x")
    print(f"packing vs a padded batch of the same samples: {packed / results[f'padded x{m}']['tokens_per_s']:.2f}x "
          "(target >= 1.5x)")
    print(f"(micro-batches of similar size: packed {args.packed_micro} rows x {args.max_seq_len} token slots, "
          f"padded {m} samples x the longest of them)")


def bench_mfu(args: argparse.Namespace, out: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--mfu needs a CUDA GPU (MFU is measured against the GPU's bf16 peak)")
    base = {
        "device": "cuda", "seed": 0,
        "model": {"tiny": dict(QWEN2_5_1_5B), "pretrained": False},
        "data": {"max_seq_len": 16384},
        "train": {"global_batch_size": args.batch_mfu, "max_steps": args.steps, "export_hf": False,
                  "loss_chunk_tokens": 4096},
        "optim": {"lr": 1e-5},
        "fsdp": {"mixed_precision": "bf16", "activation_checkpointing": True},
    }
    results = {}
    for name, attn in (("varlen", "auto"), ("sdpa-mask", "sdpa")):
        cfg = to_config(base, **{"run_dir": str(out / name), "model.attn_implementation": attn})
        train(cfg)
        results[name] = _steady(out / name, skip=2)
    print("\n== MFU benchmark: Qwen2.5-1.5B shape, random weights, 16K packed rows, bf16 + activation checkpointing ==")
    for name, r in results.items():
        print(f"{name:10} MFU {r['mfu']:.1%}  {r['tokens_per_s']:.0f} tokens/s  peak {r['peak_mem_gb']:.1f} GB  "
              f"({r['steps']} steps)")
    print("goal: MFU >= 40% (baseline: the original recipe ran at ~9% of peak)")


TRL_SETTINGS = ("padded", "padding-free", "packed")
WARMUP_RATIO = 0.1  # both trainers: ceil(0.1 x steps) warmup steps, then a cosine to 0
INSTALL_TRL = 'pip install -e ".[bench]"'


def _tiny_shape(args: argparse.Namespace) -> dict[str, int]:
    return {"hidden_size": args.hidden, "intermediate_size": int(args.hidden * 2.75), "num_hidden_layers": args.layers}


def write_model_dir(path: Path, shape: dict[str, int], seed: int) -> Path:
    """A Qwen2 of the tiny default's family with `shape`, random weights (seeded) and the embedded tokenizer,
    saved with save_pretrained: both trainers load these same weights from disk."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from sky_train.embedded import load_tiny_tokenizer

    tokenizer = load_tiny_tokenizer()
    config = Qwen2Config(**{**TINY_QWEN2, **shape}, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def trl_records(data_path: Path) -> list[dict[str, Any]]:
    """Sky-T1 records -> TRL's conversational prompt-completion form: the turns before the last assistant turn
    are the prompt, that turn the completion (TRL then computes the loss on the completion only)."""
    from sky_train.data import load_conversations

    out = []
    for conv in load_conversations(data_path):
        last = max(i for i, m in enumerate(conv.messages) if m["role"] == "assistant")
        out.append({"prompt": conv.messages[:last], "completion": conv.messages[last:last + 1]})
    return out


def _bench_sky_train(args: argparse.Namespace, model_dir: Path, data_path: Path, run_dir: Path) -> dict[str, Any]:
    cfg = to_config({
        "run_dir": str(run_dir), "device": "cpu", "seed": 0,
        "model": {"name_or_path": str(model_dir)},
        "data": {"path": str(data_path), "max_seq_len": args.max_seq_len},
        "train": {"global_batch_size": args.batch, "max_steps": args.steps, "export_hf": False,
                  "cpu_threads": args.threads},
        "optim": {"lr": args.lr, "warmup_ratio": WARMUP_RATIO, "weight_decay": 0.0, "max_grad_norm": 1.0},
        "fsdp": {"mixed_precision": "fp32", "activation_checkpointing": False},
        "metrics": {"plot": False},
    })
    result = train(cfg)
    destroy_distributed()  # sky_train's one-process group would otherwise be seen (and warned about) by TRL
    r = _steady(run_dir, skip=1)
    return {"trainer": "sky_train", "setting": "packed rows (its defaults)", "tokens_per_s": r["tokens_per_s"],
            "first_loss": result.first_loss, "last_loss": result.last_loss}


def _bench_trl(args: argparse.Namespace, setting: str, model_dir: Path, records: list[dict[str, Any]],
               out: Path, mean_len: float) -> dict[str, Any]:
    """TRL's SFTTrainer, timed like sky_train: real tokens / wall time of steps 2..N, measured by a callback
    at the end of each step (the time between two step ends includes fetching and collating the batch, as
    sky_train's step time does)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class StepEnds(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, *_: Any, **__: Any) -> None:
            self.times.append(time.perf_counter())

    batch, extra = args.batch, {}
    if setting == "padded":  # the default: each step's samples padded to the longest of them
        extra = {"max_length": args.max_seq_len}
    elif setting == "padding-free":  # the step's samples concatenated into one row, positions restart per sample
        extra = {"padding_free": True, "max_length": None}  # TRL requires max_length=None here; no record is cut
    else:  # packed: best-fit-decreasing rows of max_seq_len, as many rows a step as hold `batch` samples' tokens
        batch = max(1, round(args.batch * mean_len / args.max_seq_len))
        extra = {"packing": True, "max_length": args.max_seq_len}
    sft_args = SFTConfig(
        output_dir=str(out / f"trl_{setting}"), use_cpu=True, bf16=False, fp16=False, seed=0,
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, max_steps=args.steps,
        learning_rate=args.lr, lr_scheduler_type="cosine", warmup_steps=warmup_steps(args.steps, WARMUP_RATIO),
        weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.95, adam_epsilon=1e-8, max_grad_norm=1.0,
        optim="adamw_torch_fused", gradient_checkpointing=False, logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, dataloader_num_workers=0, **extra,
    )
    torch.set_num_threads(args.threads or usable_cores())  # as sky_train does for one rank
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    clock = StepEnds()
    trainer = SFTTrainer(model=model, args=sft_args, train_dataset=Dataset.from_list(records),
                         processing_class=tokenizer, callbacks=[clock])
    # Count the real tokens of every batch as the collator builds it (batches come in step order).
    counts: list[int] = []
    collate = trainer.data_collator

    def counting_collator(examples: list[dict[str, Any]]) -> dict[str, Any]:
        b = collate(examples)
        mask = b.get("attention_mask")
        counts.append(int(mask.sum()) if mask is not None else int(b["input_ids"].numel()))  # padding-free: no pad
        return b

    trainer.data_collator = counting_collator
    trainer.train()
    if getattr(trainer.model, "is_gradient_checkpointing", False):  # TRL's default is on; sky_train's is off here
        raise RuntimeError("TRL trained with activation checkpointing; the comparison needs it off on both sides")
    if len(clock.times) != args.steps or len(counts) < args.steps:
        raise RuntimeError(f"TRL ({setting}) ran {len(clock.times)} steps over {len(counts)} batches, expected "
                           f"{args.steps}")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"trainer": "TRL SFTTrainer", "setting": setting + (f" ({batch} rows/step)" if setting == "packed" else ""),
            "tokens_per_s": sum(counts[1:args.steps]) / (clock.times[-1] - clock.times[0]),
            "first_loss": losses[0] if losses else float("nan"), "last_loss": losses[-1] if losses else float("nan")}


def bench_peer(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    import datasets
    import torch
    import trl
    from transformers import AutoConfig, AutoTokenizer

    from sky_train.data import build_samples, load_conversations
    from sky_train.embedded import EMBEDDED_DATA
    from sky_train.model import count_params

    data_path = Path(args.data or EMBEDDED_DATA)
    model_dir = write_model_dir(out / "model", _tiny_shape(args), seed=0)
    n_params = count_params(AutoConfig.from_pretrained(model_dir))[0]
    records = trl_records(data_path)
    # sky_train's token count of a record (template + reply), to size TRL's packed rows a step.
    _, report = build_samples(load_conversations(data_path), AutoTokenizer.from_pretrained(model_dir),
                              args.max_seq_len)
    mean_len = report.tokens / report.samples

    datasets.disable_progress_bars()  # TRL's per-run tokenizing bars; the table is what matters
    load_before = os.getloadavg()[0]
    results = [_bench_sky_train(args, model_dir, data_path, out / "sky_train")]
    for setting in args.trl:
        print(f"[bench] {results[-1]['trainer']}, {results[-1]['setting']}: {results[-1]['tokens_per_s']:.0f} "
              "real tokens/s", flush=True)  # a partial result survives an interrupted benchmark
        results.append(_bench_trl(args, setting, model_dir, records, out, mean_len))

    print(f"\n== peer benchmark: {data_path.name}, Qwen2 {args.layers} layers x {args.hidden} ({n_params / 1e6:.1f}M "
          f"params), {args.steps} steps x {args.batch} samples, cutoff {args.max_seq_len}, fp32, "
          f"CPU threads: {torch.get_num_threads()}, TRL {trl.__version__} ==")
    base = results[0]["tokens_per_s"]
    print(f"{'trainer':16} {'setting':28} {'real tokens/s':>14} {'sky_train is':>13} {'loss first -> last':>20}")
    for r in results:
        print(f"{r['trainer']:16} {r['setting']:28} {r['tokens_per_s']:14.0f} {base / r['tokens_per_s']:12.2f}x "
              f"{r['first_loss']:9.3f} -> {r['last_loss']:.3f}")
    if len(results) > 1:
        best = max(results[1:], key=lambda r: r["tokens_per_s"])
        ratio = base / best["tokens_per_s"]
        print(f"goal: sky_train >= 2x TRL's best ({best['setting']}): {ratio:.2f}x -> "
              f"{'met' if ratio >= 2 else 'NOT met'}")
    print("(real tokens: non-padding tokens of the trained samples; time: steps 2..N, the first is warm-up; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores)")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--mfu", action="store_true", help="GPU MFU benchmark instead of the packing benchmark")
    mode.add_argument("--peer", action="store_true", help="sky_train vs TRL's SFTTrainer on the same model and data")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default: 12 with --peer, else 6)")
    ap.add_argument("--batch", type=int, default=None,
                    help="samples per step, packing and peer benchmarks (default: 8 with --peer, else 32)")
    ap.add_argument("--batch-mfu", type=int, default=256, help="samples per step (MFU benchmark)")
    ap.add_argument("--max-seq-len", type=int, default=2048)
    # Big enough that time follows the FLOPs (as in real training), not Python and kernel-launch overheads.
    ap.add_argument("--hidden", type=int, default=256, help="hidden size of the benchmark model")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--padded-micro", type=int, default=8, help="samples per padded micro-batch (baseline)")
    ap.add_argument("--packed-micro", type=int, default=3, help="packed rows per micro-batch")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (peer benchmark)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads of both trainers in --peer (default: the usable cores; 1 is steadier on a busy "
                         "machine, where threads that wait for each other lose their time slices)")
    ap.add_argument("--data", default=None, help="Sky-T1/OpenAI records for --peer (default: the shipped ones)")
    ap.add_argument("--trl", default=",".join(TRL_SETTINGS),
                    help=f"TRL settings for --peer, comma-separated from {', '.join(TRL_SETTINGS)}")
    ap.add_argument("--out", default=None, help="run folders (default: a temporary folder)")
    args = ap.parse_args(argv)
    if args.steps is None:
        args.steps = 12 if args.peer else 6
    if args.batch is None:
        args.batch = 8 if args.peer else 32
    args.trl = [s.strip() for s in args.trl.split(",") if s.strip()]
    unknown = sorted(set(args.trl) - set(TRL_SETTINGS))
    if unknown:
        ap.error(f"--trl: unknown setting(s) {', '.join(unknown)}; choose from {', '.join(TRL_SETTINGS)}")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.steps < 2:
        ap.error("--steps must be >= 2 (the first step is excluded as warm-up)")
    if args.peer and args.device != "cpu":
        ap.error("--peer runs on the CPU in fp32 (--device cpu)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.peer:
        try:
            import trl  # noqa: F401
        except ImportError:
            print(f"--peer compares with TRL, which is not installed: {INSTALL_TRL}", file=sys.stderr)
            raise SystemExit(2) from None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        (bench_mfu if args.mfu else bench_peer if args.peer else bench_packing)(args, out)


if __name__ == "__main__":
    main()
