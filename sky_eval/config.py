"""Typed configuration of a sky_eval run.

Hydra composes `conf/eval/sky_eval.yaml`; `to_config` merges it (or a plain dict) onto these dataclasses, so unknown
keys and wrong types fail once, before any work, and `validate` checks the values that depend on each other.

These key names are a contract that reviews use: `model`, `tasks`, `backend`, `n`, `temperature`,
`max_tokens`, `limit`, `data_dir`, `out_dir`, `replay.path`. Keep them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sky_data.typed_config import merge_onto

# Its own directory: conf/ holds sky_train's groups (model/, data/, ...), and `model=...` here is a plain key.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "eval"


@dataclass
class PromptCfg:
    # Where the "Return your final response within \boxed{}" instruction goes: "before" the problem (the
    # original's MATH500/GPQA template) or "after" it (its "sky" AIME template).
    boxed: str = "before"
    # null: no system message; "sky_t1": the Sky-T1 system prompt (models trained on Sky-T1 data need it to
    # write the thought/solution markers); any other string is the system message itself.
    system: str | None = None


@dataclass
class VLLMCfg:
    tensor_parallel_size: int = 1
    dtype: str = "auto"  # "auto" (the checkpoint's), "bfloat16", "float16", "float32"
    max_model_len: int | None = None  # null: the model's
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = False  # true: no CUDA graphs (slower; what the CPU build does anyway)
    extra: dict[str, Any] = field(default_factory=dict)  # any other LLM(...) keyword argument


@dataclass
class OpenAICfg:
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1; null: the openai package's default
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never from the config
    concurrency: int = 16
    max_retries: int = 6
    timeout_s: float = 600.0


@dataclass
class TransformersCfg:
    dtype: str = "auto"  # float32 on CPU, bfloat16 on CUDA
    device: str = "auto"
    batch_size: int = 8


@dataclass
class ReplayCfg:
    # JSONL, one line per problem: {"task": NAME, "id": ID, "responses": [...]}; ID is the task's problem id.
    path: str | None = None


@dataclass
class ScoringCfg:
    workers: int | None = None  # parallel verifier jobs; null: the CPU count
    timeout_s: float | None = None  # per comparison (math) or per test (code); null: the task's default


@dataclass
class EvalConfig:
    model: str | None = None  # a local HF dir (vllm, transformers) or the served model name (openai)
    tasks: list[str] = field(default_factory=lambda: ["math500"])
    backend: str = "vllm"  # vllm | openai | transformers | replay
    n: int = 1  # responses per problem: accuracy is avg@n, pass@k for every k <= n, maj@n
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 32768  # new tokens per response
    seed: int = 0  # base seed; each problem's own is derived from it and the problem id
    limit: int | None = None  # the first N problems of each task
    data_dir: str | None = None  # DIR/<task>/test.jsonl for every task (the layout of ../shared/data); null: hub
    out_dir: str | None = None  # null: evals/<model name>
    rescore: bool = False  # score the saved responses again; generate nothing
    overwrite: bool = False  # start over in an out_dir that holds responses made with other settings
    chunk_size: int = 64  # problems per generation call; each chunk is saved as soon as it is generated
    progress: bool = True
    prompt: PromptCfg = field(default_factory=PromptCfg)
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. livecodebench: {difficulty: [hard]}
    vllm: VLLMCfg = field(default_factory=VLLMCfg)
    openai: OpenAICfg = field(default_factory=OpenAICfg)
    transformers: TransformersCfg = field(default_factory=TransformersCfg)
    replay: ReplayCfg = field(default_factory=ReplayCfg)
    scoring: ScoringCfg = field(default_factory=ScoringCfg)


def default_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """What `python -m sky_eval [overrides]` starts from: conf/eval/sky_eval.yaml composed by Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="sky_eval", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="sky_eval", overrides=list(overrides))


def to_config(cfg: DictConfig | dict | EvalConfig | None = None, **overrides: Any) -> EvalConfig:
    """Merge a Hydra config or a nested dict onto the schema and validate it.

    A dict is merged onto the command line's defaults (conf/eval/sky_eval.yaml), so `to_config({"n": 4})` and
    `python -m sky_eval n=4` describe the same run. `overrides` are dotted keys:
    `to_config(cfg, **{"vllm.dtype": "float32"})`.
    """
    if cfg is None or isinstance(cfg, dict):
        user = OmegaConf.create(cfg or {})
        if (CONF_DIR / "sky_eval.yaml").is_file():
            base = default_config()
            OmegaConf.set_struct(base, False)
            user = OmegaConf.merge(base, user)
        cfg = user
    out = merge_onto(EvalConfig, cfg, overrides)
    if isinstance(out.tasks, str):  # tasks=math500 on the command line
        out.tasks = [out.tasks]
    out.tasks = list(out.tasks)
    validate(out)
    return out


def validate(cfg: EvalConfig) -> None:
    """Reject what cannot work, naming the key to change."""
    from sky_data.backends import BACKENDS

    if cfg.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {cfg.backend!r}")
    if not cfg.tasks:
        raise ValueError("tasks is empty: name at least one, e.g. tasks=[math500,aime24]")
    if len(set(cfg.tasks)) != len(cfg.tasks):
        raise ValueError(f"tasks lists a task twice: {cfg.tasks}")
    if cfg.n < 1:
        raise ValueError(f"n must be >= 1, got {cfg.n}")
    if cfg.temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {cfg.temperature}")
    if cfg.n > 1 and cfg.temperature == 0 and cfg.backend != "replay" and not cfg.rescore:
        raise ValueError(f"n={cfg.n} with temperature=0 asks for {cfg.n} identical greedy responses per problem; "
                         "set a sampling temperature (Sky-T1 reports used 0.7) or n=1")
    if not 0 < cfg.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {cfg.top_p}")
    if cfg.max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {cfg.max_tokens}")
    if cfg.limit is not None and cfg.limit < 1:
        raise ValueError(f"limit must be >= 1 or null, got {cfg.limit}")
    if cfg.chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {cfg.chunk_size}")
    if cfg.prompt.boxed not in ("before", "after"):
        raise ValueError(f"prompt.boxed must be 'before' or 'after', got {cfg.prompt.boxed!r}")
    if not cfg.rescore:
        if cfg.backend == "replay" and not cfg.replay.path:
            raise ValueError("backend=replay needs replay.path=FILE.jsonl")
        if cfg.backend != "replay" and not cfg.model:
            raise ValueError(f"backend={cfg.backend} needs model=... (a local HF dir, or the served model's name)")
    if cfg.out_dir is None and not cfg.model and not cfg.replay.path:
        raise ValueError("set out_dir=DIR (there is no model name to derive it from)")
