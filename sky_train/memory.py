"""Memory planner: per-GPU and per-host bytes of a sky_train run, and whether it fits.

    python -m sky_train.memory experiment=sky_t1_32b gpus=8 nodes=1
    python -m sky_train.memory experiment=sky_t1_32b gpus=8 nodes=1 fsdp.cpu_offload=false gpu_mem_gb=80
    python -m sky_train.memory model_shape=qwen2.5-7b data.max_seq_len=8192 gpus=8 nodes=1 --json

Takes the trainer's Hydra overrides (conf/train.yaml, the same groups and experiments) plus its own keys:
`gpus` (per node), `nodes`, `model_shape` (a built-in shape when `model.name_or_path` is not a directory
with a config.json), `gpu_mem_gb`, `host_mem_gb`, `gpu_reserve_gb` (CUDA context, NCCL, allocator slack),
`rank_host_gb` (each rank's process: Python, torch, CUDA libraries), `dataset_tokens` (token cache size when
it is not built yet), and `--json`.

What it models is what `train.py` + `parallel.py` do: FSDP2 `fully_shard` on every decoder layer, the
input embedding and the LM head (untied models), the root (final norm, tied embedding) never resharded;
decoder layers resharded after forward; the head kept gathered from its forward to its backward; fp32
master weights, compute-dtype gathers, fp32 reduce-scatter; fused AdamW (two fp32 moments); per-layer
activation checkpointing; the chunked cross-entropy over labelled tokens (loss.py); varlen attention
(no T^2 term). A micro-batch is `train.micro_batch_size` full rows of `data.max_seq_len` tokens, every one
labelled (the worst case), and gradient accumulation (several micro-batches a step) is assumed, so the
gradients of earlier micro-batches are alive during every forward and backward.

The GPU peak is the persistent state plus the largest of four moments of the step: the loss's backward
(every saved activation, one logits chunk and its gradient), the top decoder layer's backward (its
recompute and the gradients flowing through it), the embedding's backward and the optimiser step.
tests/test_memory.py checks the figures against tensor memory measured on CPU during real steps.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GB = 1e9  # decimal gigabytes, as GPU memory is sold (80 GB H100 = 79.6 GiB usable after the context)

# Fields of a Hugging Face Qwen2/Llama-style config.json that fix the memory.
_SHAPE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "tie_word_embeddings")


@dataclass(frozen=True)
class ModelShape:
    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    tie_word_embeddings: bool
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    attention_bias: bool = True  # Qwen2: q, k, v projections have biases

    @property
    def d(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    def layer_params(self) -> list[tuple[int, ...]]:
        """Shapes of one decoder layer's parameters (q, k, v, o, gate, up, down, two norms)."""
        h, i, d = self.hidden_size, self.intermediate_size, self.d
        q, kv = self.num_attention_heads * d, self.num_key_value_heads * d
        shapes: list[tuple[int, ...]] = [(q, h), (kv, h), (kv, h), (h, q), (i, h), (i, h), (h, i), (h,), (h,)]
        if self.attention_bias:
            shapes += [(q,), (kv,), (kv,)]
        return shapes

    def units(self) -> dict[str, list[tuple[int, ...]]]:
        """FSDP units -> parameter shapes, as parallel.apply_fsdp makes them (one entry per decoder layer
        is not repeated: see `num_hidden_layers`)."""
        emb = (self.vocab_size, self.hidden_size)
        if self.tie_word_embeddings:
            return {"layer": self.layer_params(), "embed": [], "head": [], "root": [emb, (self.hidden_size,)]}
        return {"layer": self.layer_params(), "embed": [emb], "head": [emb], "root": [(self.hidden_size,)]}

    def num_params(self) -> int:
        u = self.units()
        per = {k: sum(math.prod(s) for s in v) for k, v in u.items()}
        return per["layer"] * self.num_hidden_layers + per["embed"] + per["head"] + per["root"]


# Shapes of the recipe's models (their config.json), for planning without the weights at hand.
KNOWN_SHAPES = {
    "qwen2.5-32b": ModelShape("qwen2.5-32b", 152064, 5120, 27648, 64, 40, 8, False),
    "qwen2.5-7b": ModelShape("qwen2.5-7b", 152064, 3584, 18944, 28, 28, 4, False),
    "qwen2.5-1.5b": ModelShape("qwen2.5-1.5b", 151936, 1536, 8960, 28, 12, 2, True),
}


def shape_from_config(config: dict[str, Any], name: str) -> ModelShape:
    missing = [k for k in _SHAPE_KEYS[:6] if k not in config]
    if missing:
        raise ValueError(f"{name}: config.json lacks {', '.join(missing)}")
    return ModelShape(
        name=name, **{k: int(config[k]) for k in _SHAPE_KEYS[:6]},
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)), head_dim=config.get("head_dim"),
        attention_bias=bool(config.get("attention_bias", config.get("model_type", "qwen2") == "qwen2")),
    )


def resolve_shape(name_or_path: str | None, tiny: dict[str, Any], model_shape: str | None = None) -> ModelShape:
    """The model's shape: `model_shape` when given, else `name_or_path`'s config.json, else a known shape
    named in the path (".../Qwen2.5-32B-Instruct"), else (no path) the embedded tiny model."""
    if model_shape is not None:
        key = model_shape.lower()
        if key not in KNOWN_SHAPES:
            raise ValueError(f"model_shape={model_shape!r}: known shapes are {', '.join(KNOWN_SHAPES)}")
        return KNOWN_SHAPES[key]
    if name_or_path is None:
        from sky_train.model import TINY_QWEN2

        return shape_from_config({**TINY_QWEN2, **tiny}, "tiny")
    config = Path(name_or_path) / "config.json"
    if config.is_file():
        try:
            return shape_from_config(json.loads(config.read_text()), str(config))
        except json.JSONDecodeError as e:
            raise ValueError(f"{config}: not valid JSON ({e})") from e
    for key, shape in KNOWN_SHAPES.items():
        if key in Path(name_or_path).name.lower():
            return shape
    raise ValueError(
        f"model.name_or_path={name_or_path!r} has no config.json here: "
        f"give model_shape= one of {', '.join(KNOWN_SHAPES)}"
    )


@dataclass
class MemoryPlan:
    """Bytes per GPU (at its peak moment) and per host, with what they are made of."""

    shape: ModelShape
    gpus: int  # per node
    nodes: int
    shard_size: int  # ranks one parameter is sharded over (world / fsdp.replicate)
    params: int
    tokens: int  # per micro-batch
    gpu: dict[str, int]  # item -> bytes at the GPU's peak moment; sums to gpu_total
    gpu_peak_moment: str
    moments: dict[str, int]  # each moment of the step -> GPU bytes
    host: dict[str, int]  # item -> bytes per host (page cache included, marked as such)
    activations_checkpointed: int  # saved activations of a micro-batch with fsdp.activation_checkpointing=true
    activations_full: int  # ... and without it
    host_loading: int  # per host while the weights are read (before the optimizer state exists)
    gpu_total: int
    host_total: int
    gpu_capacity: int | None = None
    host_capacity: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def gpu_fits(self) -> bool | None:
        return None if self.gpu_capacity is None else self.gpu_total <= self.gpu_capacity

    @property
    def host_fits(self) -> bool | None:
        return None if self.host_capacity is None else self.host_total <= self.host_capacity

    def verdict(self, fsdp: Any = None) -> str:
        parts = []
        checks = (("GPU", self.gpu_total, self.gpu_capacity), ("host", self.host_total, self.host_capacity))
        for what, total, cap in checks:
            if cap is None:
                continue
            if total <= cap:
                parts.append(f"{what}: fits with {(cap - total) / GB:.1f} GB headroom")
            else:
                parts.append(f"{what}: does not fit ({total / GB:.1f} > {cap / GB:.1f} GB): {self._advice(what, fsdp)}")
        return "; ".join(parts) if parts else "no capacity given (gpu_mem_gb=, host_mem_gb=)"

    def _advice(self, what: str, fsdp: Any) -> str:
        if what == "host":
            return "more host RAM, more nodes (each holds fewer shards), or fsdp.cpu_offload=false with more GPUs"
        tips = []
        if fsdp is not None and not fsdp.sync_every_micro_batch:
            tips.append("set fsdp.sync_every_micro_batch=true")
        if fsdp is not None and not fsdp.activation_checkpointing:
            tips.append("set fsdp.activation_checkpointing=true")
        if fsdp is not None and not fsdp.cpu_offload:
            tips.append("set fsdp.cpu_offload=true")
        tips.append("reduce data.max_seq_len or train.micro_batch_size, or train.loss_chunk_tokens, or add GPUs")
        return "; ".join(tips)


def _shard_numel(shapes: list[tuple[int, ...]], shard: int) -> int:
    """Elements of one rank's shard: FSDP2 pads dim 0 up to a multiple of the shard group."""
    return sum(math.ceil(s[0] / shard) * math.prod(s[1:]) for s in shapes)


def activation_bytes_per_token(shape: ModelShape, compute_bytes: int, device: str = "cuda") -> dict[str, float]:
    """Bytes autograd keeps per token of one decoder layer's forward (transformers' Qwen2 layer), by part.

    RMSNorm keeps its fp32 input, 1/rms (fp32, one per token), the normalised values (compute dtype) for
    the weight multiply, and its output for the next projections. Attention keeps q (after RoPE), k, v, the
    output and the log-sum-exp (fp32 per head): flash/varlen kernels store no T x T matrix. The MLP keeps
    gate, silu(gate), up and their product. On the CPU, sky_train's per-document kernel also concatenates
    the documents' outputs (one more copy of the output).
    """
    b, h, i = compute_bytes, shape.hidden_size, shape.intermediate_size
    q, kv = shape.num_attention_heads * shape.d, shape.num_key_value_heads * shape.d
    norm = 4 * h + 4 + 2 * b * h
    attn = b * (2 * q + 2 * kv) + 4 * shape.num_attention_heads + (b * q if device == "cpu" else 0)
    mlp = 4 * b * i
    return {"norms": 2 * norm, "attention": attn, "mlp": mlp}


def plan(cfg: Any, gpus: int, nodes: int = 1, shape: ModelShape | None = None, *, gpu_mem_gb: float | None = None,
         host_mem_gb: float | None = None, gpu_reserve_gb: float = 0.0, rank_host_gb: float = 0.0,
         dataset_tokens: int | None = None, device: str = "cuda") -> MemoryPlan:
    """Plan a run of `cfg` (a SkyTrainConfig) on `nodes` nodes of `gpus` GPUs each.

    `device="cpu"` plans a CPU run as tests/test_memory.py measures it: the same sharding, the CPU
    attention kernel's extra output copy, nothing offloaded.
    """
    shape = shape or resolve_shape(cfg.model.name_or_path, cfg.model.tiny)
    f, t = cfg.fsdp, cfg.train
    world = gpus * nodes
    if world % f.replicate:
        raise ValueError(f"fsdp.replicate={f.replicate} must divide the number of GPUs ({world})")
    S = world // f.replicate
    b = 2 if f.mixed_precision == "bf16" else 4  # compute dtype: gathered params, their grads, activations
    offload = f.cpu_offload and device != "cpu"
    L, h, V = shape.num_hidden_layers, shape.hidden_size, shape.vocab_size
    units = shape.units()
    n = {k: sum(math.prod(s) for s in v) for k, v in units.items()}  # params per unit
    P = shape.num_params()
    n_tensors = sum(len(v) * (L if k == "layer" else 1) for k, v in units.items())
    shard = sum(_shard_numel(v, S) * (L if k == "layer" else 1) for k, v in units.items())  # params per rank

    # ---- persistent: sharded state, kept between micro-batches and steps ----
    state = {
        "parameters (sharded, fp32)": 0 if offload else 4 * shard,
        # Sharded fp32 grads; without a sync every micro-batch FSDP2 keeps unsharded fp32 grads of every
        # parameter instead (on the GPU even with offload).
        "gradients (accumulated, fp32)": 4 * P if not f.sync_every_micro_batch else (0 if offload else 4 * shard),
        # exp_avg and exp_avg_sq, plus a 4-byte step count per tensor.
        "optimizer state (AdamW, fp32)": 0 if offload else 8 * shard + 4 * n_tensors,
        "parameters (root unit, gathered)": b * n["root"],  # reshard_after_forward=False
    }

    # ---- activations of one micro-batch ----
    T = t.micro_batch_size * cfg.data.max_seq_len
    N = T  # labelled tokens: all of them, the worst case
    per_tok = activation_bytes_per_token(shape, b, device)
    layer_saved = T * sum(per_tok.values())
    ckpt = T * b * h  # a checkpointed layer keeps its input
    rope = 2 * T * shape.d * b  # cos, sin: shared by all layers
    final = T * (4 * h + 4 + b * h) + N * b * h  # final norm's saved tensors + the labelled hidden states
    saved_full = L * layer_saved + rope + final
    saved_ckpt = L * ckpt + rope + final
    saved = saved_ckpt if f.activation_checkpointing else saved_full
    c = min(t.loss_chunk_tokens, N)
    chunks = math.ceil(N / c)
    # One chunk's backward: log-softmax output (fp32, saved in the recompute), the gradient the NLL gives
    # it, and the log-softmax gradient (fp32 each); the compute-dtype logits come and go in between.
    logits = 12 * c * V
    # A tied embedding/head lives in the root unit, whose gradient is reduce-scattered only at the very end.
    tied = shape.tie_word_embeddings
    g_head_loss = b * n["root"] if tied else b * n["head"]
    g_root = b * n["root"] if tied else 0
    if chunks > 1:
        # Later chunks add their head-weight gradient to the earlier ones' out of place: old, new and sum.
        logits = max(logits, 2 * g_head_loss)
    grads_flow = 2 * T * b * h  # the gradient of the hidden states entering and leaving a layer / the head
    mlp_bwd = 2 * T * b * shape.intermediate_size  # gradients of the MLP's intermediates in its backward

    # ---- the moments of a step (bytes on top of the persistent state) ----
    g_layer, g_embed = b * n["layer"], b * n["embed"]
    rs = {k: 4 * n[k] for k in n}  # reduce-scatter input: the unit's gradient in fp32
    ag = b * n["layer"] if S > 1 else 0  # the next unit's all-gather output (prefetch); none on one rank
    # fsdp.reshard_after_forward=false: every layer and the embedding stay gathered from forward to backward.
    gathered_all = 0 if f.reshard_after_forward else b * (L * n["layer"] + n["embed"])
    moments: dict[str, dict[str, int]] = {
        # Loss backward: every saved activation, a logits chunk (or the head-gradient sum, whichever is
        # larger); the head gathered; the top decoder layer's all-gather prefetched. From the second chunk on
        # (backward runs them last to first) the head's gradient and the labelled hidden states' exist too.
        "loss backward": {
            "parameters (gathered units)": b * n["head"] + gathered_all,
            "gradients (unit in backward)": g_head_loss if chunks > 1 else 0,
            "activations (saved)": saved,
            "activations (working)": N * b * h if chunks > 1 else 0,
            "logits chunk": logits,
            "all-gather buffers": ag,
            "reduce-scatter buffers": 0,
        },
        # Top decoder layer's backward: its recompute (checkpointing) and gradients; the next layer's
        # all-gather prefetched; the head's reduce-scatter still in flight.
        "decoder backward": {
            "parameters (gathered units)": max(b * n["layer"], gathered_all),
            "gradients (unit in backward)": g_layer + g_root,
            "activations (saved)": (L - 1) * ckpt + rope if f.activation_checkpointing else L * layer_saved + rope,
            "activations (working)": (layer_saved if f.activation_checkpointing else 0) + mlp_bwd + grads_flow,
            "logits chunk": 0,
            "all-gather buffers": ag,
            "reduce-scatter buffers": rs["head"],
        },
        # Embedding's backward (last): its gathered weight, its dense gradient and reduce-scatter input.
        "embedding backward": {
            "parameters (gathered units)": b * n["embed"],
            "gradients (unit in backward)": g_embed + g_root,
            "activations (saved)": 0,
            "activations (working)": T * b * h,
            "logits chunk": 0,
            "all-gather buffers": 0,
            "reduce-scatter buffers": rs["embed"] + rs["layer"],
        },
        # Optimiser step (fused AdamW, in place): the persistent state only.
        "optimizer step": {},
    }
    if offload:
        # Staging on the GPU: the next unit's fp32 shard copied in before its all-gather, and the reduce-scatter
        # output before it goes back to the host.
        stage = 4 * max(_shard_numel(units["layer"], S), _shard_numel(units["head"], S))
        for m in ("loss backward", "decoder backward", "embedding backward"):
            moments[m]["all-gather buffers"] += stage
            moments[m]["reduce-scatter buffers"] += stage
    totals = {m: sum(state.values()) + sum(v.values()) for m, v in moments.items()}
    peak = max(totals, key=lambda m: totals[m])
    reserve = int(gpu_reserve_gb * GB)
    gpu = {**state, **{k: 0 for k in moments["loss backward"]}, **moments[peak], "runtime reserve": reserve}

    # ---- per host (training; loading comes before the optimizer state exists and is smaller) ----
    host = {
        # Each of this host's ranks keeps its shard of params + grads (pinned) and the AdamW moments.
        "offloaded params+grads+optimizer (pinned)": gpus * (16 * shard + 4 * n_tensors) if offload else 0,
        "rank processes (Python, torch, CUDA)": int(gpus * rank_host_gb * GB),
        "token cache (page cache, memory-mapped)": _token_cache_bytes(cfg, dataset_tokens),
        # train.async_save stages a copy of each rank's fp32 params and AdamW moments in host memory (kept
        # for the run, so that a save blocks training only for the copy).
        "checkpoint staging (async saves)": (
            gpus * (12 * shard) if cfg.train.save_every and cfg.train.async_save else 0
        ),
    }
    # Loading: every rank reads its own rows of one safetensors file at a time (~5 GB files, bf16) into its
    # shards; the file passes through the page cache once per host.
    file_bytes = min(2 * P, int(5 * GB))
    host_loading = (gpus * 4 * shard if offload else 0) + gpus * 2 * math.ceil(file_bytes / S) + file_bytes
    notes = []
    if N == T:
        notes.append("every token of every row is assumed labelled (the loss's worst case)")
    if f.cpu_offload and device == "cpu":
        notes.append("fsdp.cpu_offload ignored on the CPU")
    return MemoryPlan(
        shape=shape, gpus=gpus, nodes=nodes, shard_size=S, params=P, tokens=T, gpu=gpu, gpu_peak_moment=peak,
        moments={m: v + reserve for m, v in totals.items()}, host=host,
        activations_checkpointed=saved_ckpt, activations_full=saved_full,
        gpu_total=totals[peak] + reserve, host_total=sum(host.values()), host_loading=host_loading,
        gpu_capacity=None if gpu_mem_gb is None else int(gpu_mem_gb * GB),
        host_capacity=None if host_mem_gb is None else int(host_mem_gb * GB), notes=notes,
    )


def _token_cache_bytes(cfg: Any, dataset_tokens: int | None) -> int:
    """The token cache's files (token_cache.py: int32 ids + int32 labels per token), or 8 x dataset_tokens
    when it is not built yet."""
    if dataset_tokens is not None:
        return 8 * dataset_tokens
    cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.run_dir).parent / ".token_cache"
    return sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) if cache.is_dir() else 0


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"


def format_plan(p: MemoryPlan, fsdp: Any = None) -> str:
    s = p.shape
    lines = [
        f"model {s.name}: {_count(p.params)} params, {s.num_hidden_layers} layers, hidden {s.hidden_size}, "
        f"vocab {s.vocab_size}; {p.nodes} node(s) x {p.gpus} GPUs, params sharded over {p.shard_size}; "
        f"{p.tokens} tokens per micro-batch",
        "",
        f"per GPU (at its peak: {p.gpu_peak_moment})            GB",
    ]
    lines += [f"  {k:<44} {v / GB:8.2f}" for k, v in p.gpu.items()]
    lines += [f"  {'total':<44} {p.gpu_total / GB:8.2f}", ""]
    lines += ["  moments of the step (GPU total)"]
    lines += [f"    {k:<42} {v / GB:8.2f}" for k, v in p.moments.items()]
    lines += [f"  saved activations, with checkpointing      {p.activations_checkpointed / GB:8.2f}",
              f"  saved activations, without checkpointing   {p.activations_full / GB:8.2f}", "",
              "per host                                          GB"]
    lines += [f"  {k:<44} {v / GB:8.2f}" for k, v in p.host.items()]
    lines += [f"  {'total':<44} {p.host_total / GB:8.2f}",
              f"  {'(while loading the weights)':<44} {p.host_loading / GB:8.2f}", ""]
    lines += [f"note: {x}" for x in p.notes]
    lines.append(p.verdict(fsdp))
    return "\n".join(lines)


_OWN_KEYS = {"gpus": int, "nodes": int, "model_shape": str, "gpu_mem_gb": float, "host_mem_gb": float,
             "gpu_reserve_gb": float, "rank_host_gb": float, "dataset_tokens": int}


def compose_config(overrides: list[str]) -> tuple[Any, bool]:
    """The trainer's config for these Hydra overrides (conf/train.yaml, outside a Hydra app), and whether
    `model.name_or_path` was left unset (`???`, as experiment=sky_t1_32b leaves it to the command line)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from sky_train.config import to_config

    conf = Path(__file__).resolve().parents[1] / "conf"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        dc = compose(config_name="train", overrides=overrides)
    dc.run_dir = f"runs/{dc.run_name}"  # ${hydra:runtime.output_dir} means nothing outside a Hydra app
    if OmegaConf.is_missing(dc.model, "name_or_path"):
        dc.model.name_or_path = None  # planned from model_shape / the run name instead
        dc.model.pretrained = False
        missing_model = True
    else:
        missing_model = False
    return to_config(dc), missing_model


def main(argv: list[str] | None = None) -> MemoryPlan:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    own: dict[str, Any] = {"gpus": 8, "nodes": 1, "gpu_mem_gb": 80.0, "host_mem_gb": None, "gpu_reserve_gb": 3.0,
                           "rank_host_gb": 4.0, "model_shape": None, "dataset_tokens": None}
    overrides = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in _OWN_KEYS:
            try:
                own[key] = _OWN_KEYS[key](value)
            except ValueError:
                raise SystemExit(f"{arg}: {key} takes a {_OWN_KEYS[key].__name__}") from None
        elif arg != "--json":
            overrides.append(arg)
    cfg, missing_model = compose_config(overrides)
    shape = None
    if own["model_shape"] is not None or missing_model:
        shape = resolve_shape(None if missing_model else cfg.model.name_or_path, cfg.model.tiny, own["model_shape"]
                              or _shape_for_run(cfg.run_name))
    p = plan(cfg, own["gpus"], own["nodes"], shape, gpu_mem_gb=own["gpu_mem_gb"], host_mem_gb=own["host_mem_gb"],
             gpu_reserve_gb=own["gpu_reserve_gb"], rank_host_gb=own["rank_host_gb"],
             dataset_tokens=own["dataset_tokens"], device="cpu" if cfg.device == "cpu" else "cuda")
    if as_json:
        out = asdict(p)
        out.update(gpu_fits=p.gpu_fits, host_fits=p.host_fits, verdict=p.verdict(cfg.fsdp))
        print(json.dumps(out, indent=2))
    else:
        print(format_plan(p, cfg.fsdp))
    return p


def _shape_for_run(run_name: str) -> str:
    """A known shape named by the run (sky_t1_32b -> qwen2.5-32b), for experiments whose model path is
    left to the command line."""
    for key in KNOWN_SHAPES:
        if run_name.lower().endswith("_" + key.split("-")[-1].replace(".", "_")):
            return key
    raise ValueError(
        f"model.name_or_path is not set (run {run_name!r}): give model.name_or_path=DIR or model_shape= one of "
        f"{', '.join(KNOWN_SHAPES)}"
    )


if __name__ == "__main__":
    main()
