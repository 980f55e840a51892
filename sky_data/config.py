"""Typed configuration of the data pipeline (`python -m sky_data`).

Hydra composes `conf/sky_data/sky_data.yaml` (its own directory, so it never meets sky_train's `conf/data/`
group); `to_config` merges it, or a plain dict, onto these dataclasses, so unknown keys and wrong types fail
once, before any work or any money is spent, and `validate` checks the values that depend on each other.

These keys are a contract that reviews use: `out_dir`, `source=local source.path=FILE`, `teacher.backend`,
`teacher.base_url`, `teacher.model`, `teacher.n`, `teacher.max_tokens`, `teacher.temperature`,
`teacher.concurrency`, `rewrite.enabled`, `select.per_problem`. API keys come from the environment variable
named by `*.api_key_env`, never from a config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sky_data.typed_config import merge_onto

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "sky_data"

SOURCES = ("local", "numina", "apps", "taco", "math", "aime", "still2", "mix")


@dataclass
class SourceCfg:
    # local: a JSON/JSONL/parquet file of your own; numina, apps, taco, math, aime, still2: the datasets on
    # the hub (or `path`: a local copy of one: a datasets dir, a parquet/JSONL file); mix: `parts`.
    name: str = "local"
    path: str | None = None
    hub_name: str | None = None  # the hub dataset to load instead of the source's default
    hub_config: str | None = None  # its configuration (subset) name, where it has several
    split: str = "train"
    # numina: its `source` values to keep (amc_aime, math, olympiads, ...); apps/taco: difficulties;
    # still2: domains; math: subjects. Empty: keep all.
    subsets: list[str] = field(default_factory=list)
    domain: str | None = None  # local: the domain of records that do not name one (math, code, science)
    limit: int | None = None  # read only the first N usable problems
    take: int | None = None  # keep N problems, drawn with `seed` (a mix's share of this source)
    parts: list[dict[str, Any]] = field(default_factory=list)  # mix: one SourceCfg (as a dict) per part


@dataclass
class LLMCfg:
    """A model the pipeline asks: the teacher, the rewriter, the difficulty rater."""

    backend: str = "openai"  # openai | vllm | ray | transformers | replay
    model: str | None = None  # the served model name (openai, ray http) or a local HF dir / hub name (vllm)
    base_url: Any = None  # openai: "http://host:8000/v1", or a list of them (replicas, spread by load)
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the key
    n: int = 1  # samples per problem
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 16384  # new tokens per sample
    seed: int = 0  # base seed; each request's own is derived from it and the request's key
    concurrency: int = 16  # openai: HTTP requests in flight (over all replicas); ray: extra.concurrency (actors)
    max_retries: int = 6  # per request, on 429/5xx/timeouts/malformed replies
    timeout_s: float = 600.0  # per HTTP request
    chunk_size: int = 256  # requests per backend call for in-process engines (each chunk is saved as it ends)
    price_input: float = 0.0  # USD per million prompt tokens (for report.json's money spent)
    price_output: float = 0.0  # USD per million completion tokens
    # other backend arguments: vllm {tensor_parallel_size, dtype, max_model_len, ...}; ray {address, engine,
    # concurrency (actors per URL, or engine replicas), batch_size, ...}; replay {path}. See sky_data/backends/.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TeacherCfg(LLMCfg):
    # "sky_t1": the Sky-T1 system prompt (asks for the thought/solution markers); null: none; else the text itself
    system_prompt: str | None = "sky_t1"


@dataclass
class RewriteCfg(LLMCfg):
    enabled: bool = True  # false: the teacher's text is kept as it is (and must carry the markers itself)
    prompt: str = "v1"  # sky_data/prompts/rewrite_<prompt>.txt, versioned in the repo
    # rewrite only samples whose final answer (math) or program (code) already passes: a rewrite cannot make a
    # wrong trace right, so this saves its cost; the rewritten text is verified again either way
    prefilter: bool = True
    model: str | None = "gpt-4o-mini"
    temperature: float = 0.0
    price_input: float = 0.15  # gpt-4o-mini list prices, USD per million tokens
    price_output: float = 0.60


@dataclass
class DifficultyCfg(LLMCfg):
    enabled: bool = False
    # keep[source] = [lo, hi]: keep problems of that source rated lo..hi (inclusive); sources not named are kept
    keep: dict[str, list[Any]] = field(default_factory=dict)  # numbers; Any: OmegaConf refuses int for float
    model: str | None = "gpt-4o-mini"
    temperature: float = 0.0
    max_tokens: int = 512
    price_input: float = 0.15
    price_output: float = 0.60


@dataclass
class SelectCfg:
    per_problem: int = 1  # verified samples kept per problem (the original kept 1)
    math_timeout_s: float = 5.0  # per answer comparison
    code_timeout_s: float = 6.0  # per test
    workers: int | None = None  # parallel verifier jobs; null: the CPU count


@dataclass
class DedupCfg:
    exact: bool = True  # one problem per distinct normalised question
    near: bool = True  # and per cluster of near-duplicates (MinHash LSH over word shingles)
    near_threshold: float = 0.9  # estimated Jaccard similarity at which two questions are the same
    num_perm: int = 128  # MinHash permutations
    shingle: int = 5  # words per shingle
    decontaminate: bool = True  # drop problems that share an n-gram with a benchmark question
    benchmarks_dir: str | None = None  # DIR/<task>/test.jsonl (the layout of ../shared/data); null: none checked
    benchmarks: list[str] = field(default_factory=list)  # empty: every benchmark sky_eval knows (toy_addition only when named)
    # words per n-gram in the overlap check. 13 (GPT-3's choice), not 8: at 8 words, 3-40% of each math
    # benchmark's questions "overlap" another benchmark through stock wording ("where m and n are relatively
    # prime positive integers"), and training problems written the same way would be dropped for it
    ngram: int = 13
    # leave out n-grams that two or more benchmark questions share (stock phrases); every benchmark question
    # keeps n-grams of its own, so a copied question is still caught
    skip_shared: bool = True


@dataclass
class DataConfig:
    out_dir: str | None = None  # everything the run writes and reads back; null: runs/data/<source name>
    seed: int = 0  # draws of `take`
    progress: bool = True
    source: SourceCfg = field(default_factory=SourceCfg)
    dedup: DedupCfg = field(default_factory=DedupCfg)
    difficulty: DifficultyCfg = field(default_factory=DifficultyCfg)
    teacher: TeacherCfg = field(default_factory=TeacherCfg)
    rewrite: RewriteCfg = field(default_factory=RewriteCfg)
    select: SelectCfg = field(default_factory=SelectCfg)


def default_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """What `python -m sky_data [overrides]` starts from: conf/sky_data/sky_data.yaml composed by Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="sky_data", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="sky_data", overrides=list(overrides))


def to_config(cfg: DictConfig | dict | DataConfig | None = None, **overrides: Any) -> DataConfig:
    """Merge a Hydra config or a nested dict onto the schema and validate it.

    A dict is merged onto the command line's defaults, so `to_config({"teacher": {"n": 4}})` and
    `python -m sky_data teacher.n=4` describe the same run. `overrides` are dotted keys.
    """
    if cfg is None or isinstance(cfg, dict):
        base = default_config()
        OmegaConf.set_struct(base, False)
        cfg = OmegaConf.merge(base, OmegaConf.create(cfg or {}))
    out = merge_onto(DataConfig, cfg, overrides)
    validate(out)
    return out


def validate(cfg: DataConfig) -> None:
    """Reject what cannot work, naming the key to change."""
    from sky_data.backends import BACKENDS

    if cfg.source.name not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {cfg.source.name!r}")
    if cfg.source.name == "local" and not cfg.source.path:
        raise ValueError("source=local needs source.path=FILE (.json, .jsonl or .parquet)")
    if cfg.source.name == "mix" and not cfg.source.parts:
        raise ValueError("source=mix needs source.parts")
    stages = [("teacher", cfg.teacher)]
    if cfg.rewrite.enabled:
        stages.append(("rewrite", cfg.rewrite))
    if cfg.difficulty.enabled:
        stages.append(("difficulty", cfg.difficulty))
    for key, llm in stages:
        if llm.backend not in BACKENDS:
            raise ValueError(f"{key}.backend must be one of {', '.join(BACKENDS)}, got {llm.backend!r}")
        if llm.backend == "replay":
            if not llm.extra.get("path"):
                raise ValueError(f"{key}.backend=replay needs {key}.extra.path=FILE.jsonl")
        elif not llm.model:
            raise ValueError(f"{key}.model is not set: the served model's name (openai) or a model dir (vllm)")
        if llm.n < 1:
            raise ValueError(f"{key}.n must be >= 1, got {llm.n}")
        if llm.temperature < 0:
            raise ValueError(f"{key}.temperature must be >= 0, got {llm.temperature}")
        if llm.max_tokens < 1:
            raise ValueError(f"{key}.max_tokens must be >= 1, got {llm.max_tokens}")
        if llm.concurrency < 1:
            raise ValueError(f"{key}.concurrency must be >= 1, got {llm.concurrency}")
        if llm.chunk_size < 1:
            raise ValueError(f"{key}.chunk_size must be >= 1, got {llm.chunk_size}")
        if llm.price_input < 0 or llm.price_output < 0:
            raise ValueError(f"{key}.price_input/price_output are USD per million tokens, >= 0")
        urls = llm.base_url if isinstance(llm.base_url, list) else [llm.base_url]
        if not all(u is None or isinstance(u, str) for u in urls) or (isinstance(llm.base_url, list) and not urls):
            raise ValueError(f"{key}.base_url must be a URL or a non-empty list of URLs, got {llm.base_url!r}")
    if cfg.teacher.n > 1 and cfg.teacher.temperature == 0 and cfg.teacher.backend != "replay":
        raise ValueError(f"teacher.n={cfg.teacher.n} at teacher.temperature=0 asks for identical greedy samples; "
                         "sample (the recipe used 0.7) or set teacher.n=1")
    if cfg.select.per_problem < 1:
        raise ValueError(f"select.per_problem must be >= 1, got {cfg.select.per_problem}")
    if cfg.select.per_problem > cfg.teacher.n:
        raise ValueError(f"select.per_problem={cfg.select.per_problem} can never be reached with "
                         f"teacher.n={cfg.teacher.n} samples per problem")
    if not 0 < cfg.dedup.near_threshold <= 1:
        raise ValueError(f"dedup.near_threshold must be in (0, 1], got {cfg.dedup.near_threshold}")
    if cfg.dedup.ngram < 1 or cfg.dedup.shingle < 1:
        raise ValueError("dedup.ngram and dedup.shingle must be >= 1")
    from sky_data.dedup import BENCHMARKS

    unknown = [b for b in cfg.dedup.benchmarks if b not in BENCHMARKS]
    if unknown:
        raise ValueError(f"dedup.benchmarks: unknown {unknown}; known: {', '.join(sorted(BENCHMARKS))}")
    for src, rng in cfg.difficulty.keep.items():
        if (len(rng) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in rng)
                or rng[0] > rng[1]):
            raise ValueError(f"difficulty.keep.{src} must be [lo, hi] with lo <= hi, got {rng}")
