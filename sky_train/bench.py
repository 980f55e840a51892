"""Benchmarks of the training step, each printed next to its baseline measured in the same run.

    python -m sky_train.bench                 # packing vs padded micro-batches on the embedded data (CPU ok)
    python -m sky_train.bench --mfu           # GPU: MFU of a Qwen2.5-1.5B-shaped model, 16K packed rows, bf16 + AC

packing: the same samples, model and steps, trained by sky_train with packed rows (data.packing=true,
`--packed-micro` rows a micro-batch) and, as the baseline, with padded micro-batches of `--padded-micro`
samples in batch order (data.packing=false, group_by_length=false); also shown: padded length-grouped
micro-batches, and one sample per micro-batch as Sky-T1 trained. The figure is real (non-padding) tokens
per second, first step excluded as warm-up. Target: packing >= 1.5x the padded baseline on these skewed
lengths.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from sky_train.config import to_config
from sky_train.model import TINY_QWEN2
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
        "model": {"tiny": {**TINY_QWEN2, "hidden_size": args.hidden, "intermediate_size": int(args.hidden * 2.75),
                           "num_hidden_layers": args.layers}},
        "data": {"max_seq_len": args.max_seq_len},
        "train": {"global_batch_size": args.batch, "max_steps": args.steps, "export_hf": False},
        "optim": {"lr": 1e-3},
        "fsdp": {"mixed_precision": "fp32", "activation_checkpointing": False},
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
        print(f"{name:30} {r['tokens_per_s']:14.0f} {r['packing_efficiency']:13.1%} {packed / r['tokens_per_s']:16.2f}x")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mfu", action="store_true", help="GPU MFU benchmark instead of the packing benchmark")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32, help="samples per step (packing benchmark)")
    ap.add_argument("--batch-mfu", type=int, default=256, help="samples per step (MFU benchmark)")
    ap.add_argument("--max-seq-len", type=int, default=2048)
    # Big enough that time follows the FLOPs (as in real training), not Python and kernel-launch overheads.
    ap.add_argument("--hidden", type=int, default=256, help="hidden size of the benchmark model")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--padded-micro", type=int, default=8, help="samples per padded micro-batch (baseline)")
    ap.add_argument("--packed-micro", type=int, default=3, help="packed rows per micro-batch")
    ap.add_argument("--out", default=None, help="run folders (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        (bench_mfu if args.mfu else bench_packing)(args, out)


if __name__ == "__main__":
    main()
