"""Typed configuration of a sky_train run.

Hydra composes `conf/train.yaml` and its groups into a DictConfig; `to_config` merges it onto these
dataclasses (unknown keys and wrong types fail there, once) and `validate` checks the values that depend on
each other. Everything below the entry point takes these plain dataclasses, never a DictConfig.

The key names are the public interface (`run_dir`, `seed`, `model.name_or_path`, `data.path`,
`data.max_seq_len`, `data.packing`, `train.global_batch_size`, `train.micro_batch_size`, `train.epochs`,
`train.max_steps`, `optim.lr`, `optim.warmup_ratio`, `optim.max_grad_norm`, `fsdp.mixed_precision`,
`fsdp.activation_checkpointing`, `fsdp.cpu_offload`): keep them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sky_data.typed_config import merge_onto


@dataclass
class ModelConfig:
    # A local Hugging Face causal-LM directory (config + safetensors + tokenizer). None: build `tiny` from a
    # config with random weights and use the tokenizer that ships with sky_train (the embedded default).
    name_or_path: str | None = None
    # Keyword arguments of transformers' Qwen2Config for the from-scratch model, used when name_or_path is None.
    tiny: dict[str, Any] = field(default_factory=dict)
    # Tokenizer directory, when it is not the model's own directory.
    tokenizer: str | None = None
    # "auto": sdpa on CPU (packed mask from position_ids), varlen flash attention on CUDA when available.
    attn_implementation: str = "auto"
    # Load pretrained weights (True) or only the architecture with random weights (False), e.g. for benchmarks.
    pretrained: bool = True


@dataclass
class DataConfig:
    # A JSON/JSONL file (Sky-T1 `conversations` or OpenAI `messages` records), a directory saved by
    # `datasets.Dataset.save_to_disk`, or "hf:<name>" for a `datasets` hub name. None: the embedded set.
    path: str | None = None
    split: str = "train"
    max_seq_len: int = 16384
    packing: bool = True
    # Unpacked only: sort each step's samples by length before forming padded micro-batches (less padding).
    group_by_length: bool = True
    # What ends an assistant turn. None: whatever the tokenizer's chat template writes (Qwen2.5-Instruct:
    # <|im_end|>). The original Sky-T1 template ended assistant turns with "<|endoftext|>".
    assistant_end: str | None = None
    # Sky-T1 records carry their own `system`; this one is used for records without one (None: the template's).
    default_system: str | None = None
    # Shuffle the samples every epoch (seeded by `seed` and the epoch).
    shuffle: bool = True
    # Cap on the number of samples read (None: all), handy for smoke tests.
    max_samples: int | None = None
    # Where tokenized samples are cached (flat token arrays, memory-mapped by every rank), keyed by the data
    # file, tokenizer, template and cutoff. None: <parent of run_dir>/.token_cache (shared by a sweep's points).
    cache_dir: str | None = None


@dataclass
class TrainConfig:
    # Samples per optimiser step over all ranks, as in the recipe (96 = micro 1 x accumulation 12 x 8 GPUs).
    global_batch_size: int = 96
    # Rows per micro-batch: packed rows of max_seq_len tokens with packing, samples without.
    micro_batch_size: int = 1
    epochs: int = 3
    # Stop after this many optimiser steps (None: run all epochs). Also sets the LR schedule length.
    max_steps: int | None = None
    # How the step's loss weighs tokens. "token": the summed CE over the global batch's assistant tokens
    # divided by their count (long traces weigh more). "sample": the mean over the batch's samples of each
    # sample's own token-mean CE (every sample weighs the same), as the original HF Trainer run (micro-batch 1).
    loss_weighting: str = "token"
    # Log every N optimiser steps (the last step is always logged).
    log_every: int = 1
    # Save a resumable checkpoint (run_dir/step_NNNNNN/) every N optimiser steps; 0: never.
    save_every: int = 0
    # Checkpoints kept (oldest deleted first); a 32B model's full optimiser state is ~390 GB.
    keep_checkpoints: int = 1
    # Write checkpoints in the background (DCP async save with staging) so training goes on meanwhile.
    async_save: bool = True
    # Continue from the newest complete checkpoint in run_dir when there is one (and the settings match).
    resume: bool = True
    # Start over in a run_dir that holds a finished run or a run with other settings (its files are replaced).
    overwrite: bool = False
    # Export the trained model in Hugging Face format to <run_dir>/hf/.
    export_hf: bool = True
    # Tokens per chunk of the chunked cross-entropy (bounds the logits' memory at large vocabularies).
    loss_chunk_tokens: int = 4096
    # Intra-op CPU threads per rank (the CPU optimiser step with offload, CPU training). None: the host's
    # cores divided by the ranks on this node (torchrun sets OMP_NUM_THREADS=1, which would leave one).
    cpu_threads: int | None = None


@dataclass
class OptimConfig:
    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_ratio: float = 0.1
    # The cosine decays to min_lr_ratio * lr.
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    # Use the fused AdamW kernel where torch has one for the device.
    fused: bool = True


@dataclass
class FSDPConfig:
    # bf16: bf16 compute with fp32 master weights and fp32 gradient reduction. fp32: everything fp32.
    mixed_precision: str = "bf16"
    activation_checkpointing: bool = True
    # Keep parameters, gradients and optimiser state on the CPU (GPU runs only).
    cpu_offload: bool = False
    reshard_after_forward: bool = True
    # Reduce-scatter gradients after every micro-batch (sharded gradients between micro-batches). false: only
    # after the last one, keeping *unsharded* fp32 gradients meanwhile (~4 bytes x parameters per GPU:
    # 131 GB at 32B); saves communication for small models only.
    sync_every_micro_batch: bool = True
    # Hybrid sharding: the ranks form `replicate` groups (e.g. one per node), each holding a full sharded copy;
    # parameters are sharded within a group and gradients all-reduced across groups. 1: shard over all ranks.
    replicate: int = 1


@dataclass
class MetricsConfig:
    # Peak dense FLOP/s of one device for MFU. None: looked up for known GPUs, unknown (null MFU) on CPU.
    peak_flops: float | None = None
    wandb: bool = False
    wandb_project: str = "sky-recipe"
    # Draw <run_dir>/loss.png (loss and learning rate against step) at the end of a run (needs matplotlib).
    plot: bool = True


@dataclass
class SkyTrainConfig:
    run_name: str = "default"
    # Everything a run writes goes here; the same path on every rank (no timestamps).
    run_dir: str = "runs/default"
    seed: int = 0
    # "auto": cuda when available, else cpu.
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def default_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """What `python -m sky_train [overrides]` starts from: conf/train.yaml and its default groups, composed by
    Hydra (without Hydra's runtime: `run_dir` is set by `to_config`)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # called inside a Hydra app: it searches the same conf/
        return compose(config_name="train", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def to_config(
    cfg: DictConfig | dict | SkyTrainConfig | None = None, experiment: str | None = None, **overrides: Any
) -> SkyTrainConfig:
    """Merge a Hydra/OmegaConf config (or a nested dict) onto the schema and validate it.

    A DictConfig is taken as complete (Hydra composed it). A nested dict (or None) is merged onto the same
    defaults as the command line (`conf/train.yaml`, and `experiment` when given), so that
    `to_config({"optim": {"lr": 1e-3}})` and `python -m sky_train optim.lr=1e-3` are the same run; its
    `run_dir` defaults to `runs/<run_name>` as on the command line. Unknown keys and values of the wrong type
    raise here, before any work starts. `overrides` are dotted keys, e.g. `to_config(cfg, **{"optim.lr": 2e-5})`.
    """
    if cfg is None or isinstance(cfg, dict):
        user = OmegaConf.create(cfg or {})
        experiment = user.pop("experiment", None) or experiment
        base = _command_line_defaults(experiment)
        if base is not None:
            OmegaConf.set_struct(base, False)  # the schema below decides which keys exist
            base.run_dir = None  # ${hydra:runtime.output_dir} means nothing outside a Hydra app
            user = OmegaConf.merge(base, user)
        if user.get("run_dir") is None:
            user.run_dir = f"runs/{user.get('run_name') or 'default'}"
        cfg = user
    # Hydra-only sections (hydra:, defaults:) are not ours.
    out = merge_onto(SkyTrainConfig, cfg, overrides, drop=("hydra", "defaults", "experiment", "debug"))
    out.optim.betas = tuple(out.optim.betas)  # type: ignore[assignment]
    validate(out)
    return out


def _command_line_defaults(experiment: str | None) -> DictConfig | None:
    if not (CONF_DIR / "train.yaml").is_file():  # installed without the repo's conf/: the schema's defaults
        if experiment:
            raise FileNotFoundError(f"{CONF_DIR}: no conf/ here to read experiment={experiment} from")
        return None
    return default_config([f"experiment={experiment}"] if experiment else [])


def validate(cfg: SkyTrainConfig) -> None:
    """Reject combinations that cannot work, with the key to change in the message."""
    if cfg.fsdp.mixed_precision not in ("bf16", "fp32"):
        raise ValueError(f"fsdp.mixed_precision must be 'bf16' or 'fp32', got {cfg.fsdp.mixed_precision!r}")
    if cfg.data.max_seq_len < 2:
        raise ValueError(f"data.max_seq_len must be >= 2, got {cfg.data.max_seq_len}")
    if cfg.train.global_batch_size < 1 or cfg.train.micro_batch_size < 1:
        raise ValueError("train.global_batch_size and train.micro_batch_size must be >= 1")
    if cfg.train.max_steps is None and cfg.train.epochs < 1:
        raise ValueError("set train.epochs >= 1 or train.max_steps")
    if cfg.train.max_steps is not None and cfg.train.max_steps < 1:
        raise ValueError(f"train.max_steps must be >= 1, got {cfg.train.max_steps}")
    if not 0.0 <= cfg.optim.warmup_ratio < 1.0:
        raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {cfg.optim.warmup_ratio}")
    if cfg.optim.lr <= 0:
        raise ValueError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.train.log_every < 1:
        raise ValueError(f"train.log_every must be >= 1, got {cfg.train.log_every}")
    if cfg.train.loss_weighting not in ("token", "sample"):
        raise ValueError(f"train.loss_weighting must be 'token' or 'sample', got {cfg.train.loss_weighting!r}")
    if cfg.train.save_every < 0 or cfg.train.keep_checkpoints < 0:
        raise ValueError("train.save_every and train.keep_checkpoints must be >= 0")
    if cfg.train.cpu_threads is not None and cfg.train.cpu_threads < 1:
        raise ValueError(f"train.cpu_threads must be >= 1 or null, got {cfg.train.cpu_threads}")
    if cfg.fsdp.replicate < 1:
        raise ValueError(f"fsdp.replicate must be >= 1, got {cfg.fsdp.replicate}")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {cfg.device!r}")
