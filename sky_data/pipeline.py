"""The data pipeline that makes a Sky-T1-style SFT set, read top to bottom: problems -> verified traces.

    python -m sky_data source=local source.path=problems.jsonl teacher.model=QwQ \
        teacher.base_url=http://127.0.0.1:8000/v1 teacher.n=4 out_dir=runs/data/mine
    from sky_data.pipeline import run_pipeline; report = run_pipeline({"source": {...}, "teacher": {...}})

Stages, each reading and writing files under `out_dir`:
1. sources     -> problems.jsonl, source_rejected.jsonl   (one Problem schema; bad records kept with a reason)
2. dedup       -> dedup_dropped.jsonl                      (exact, near-duplicate, benchmark overlap)
3. difficulty  -> difficulty.jsonl                         (optional: a model rates 1-10; keep ranges per source)
4. generate    -> the teacher's n samples per problem
5. rewrite     -> each passing sample in the four-marker format (optional; `rewrite.prefilter` first drops
                  samples whose answer or program already fails, so no rewrite is paid for them)
6. select      -> samples.jsonl                            (every sample, kept or the reason it was not)
7. export      -> sft.jsonl (Sky-T1 records), report.json, log.jsonl, config.json

Resume: every model answer is written to `cache/requests.jsonl` the moment it arrives, keyed by the content of
the request (`sky_data.cache`), and every verdict to `cache/verdicts.jsonl`. Outputs are rebuilt from those on
each run and written atomically. So a run killed at any moment (SIGKILL included) and started again with the
same command sends only the requests that had not been answered, judges only what was not judged, and writes
the same files an uninterrupted run writes. Deduplication runs before any request (the issue lists it sixth):
a duplicate or contaminated problem should cost nothing, and the SFT set then holds one problem per question.

Failures: a malformed source record, a request the server refused for its content (HTTP 400/413/422), a
truncated sample, or a failed check is recorded with its reason and counted in report.json. A server that
keeps failing, a bad key or an unknown model stops the run with the backend's message after its bounded
retries; what was answered before is in the cache, and the next run picks up from there.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sky_data.backends import Backend, Generation, Request, SamplingConfig, make_backend
from sky_data.cache import RequestCache, request_hash
from sky_data.config import DataConfig, LLMCfg, to_config
from sky_data.prompts import load_prompt, render, system_prompt, user_prompt
from sky_data.schema import Problem
from sky_data.select import Check, judge
from sky_data.store import AppendLog, EventLog, write_json_atomic, write_jsonl_atomic

__all__ = ["run_pipeline"]

log = logging.getLogger(__name__)

JUDGE_CHUNK = 256  # samples judged between two writes of the verdict cache


def run_pipeline(cfg: DataConfig | dict | Any = None, backends: dict[str, Backend] | None = None) -> dict:
    """Run every stage (see the module docstring) and return report.json's content.

    `backends` maps a stage ("teacher", "rewrite", "difficulty") to a Backend the caller already holds;
    the others are built from the config, and only when a request is not in the cache."""
    cfg = cfg if isinstance(cfg, DataConfig) else to_config(cfg)
    out = Path(cfg.out_dir or f"runs/data/{cfg.source.name}")
    out.mkdir(parents=True, exist_ok=True)
    events = EventLog(out / "log.jsonl")
    write_json_atomic(out / "config.json", asdict(cfg))
    events.write("start", out_dir=str(out))
    ledger = Ledger()
    timings: dict[str, float] = {}
    cache = RequestCache(out / "cache" / "requests.jsonl")
    verdicts = VerdictCache(out / "cache" / "verdicts.jsonl")
    clients = Clients(dict(backends or {}))
    try:
        # ------------------------------------------------------------------ 1. sources
        t = time.monotonic()
        from sky_data.sources import load_source

        loaded = load_source(cfg.source, seed=cfg.seed, progress=cfg.progress)
        write_jsonl_atomic(out / "problems.jsonl", (p.to_dict() for p in loaded.problems))
        write_jsonl_atomic(out / "source_rejected.jsonl", (asdict(r) for r in loaded.rejected))
        for p in loaded.problems:
            ledger.add(p.source, "problems")
        for r in loaded.rejected:
            ledger.add(r.source, "source_rejected")
        timings["sources"] = time.monotonic() - t
        events.write("sources", problems=len(loaded.problems), rejected=len(loaded.rejected))

        # ------------------------------------------------------------------ 2. dedup and decontaminate
        t = time.monotonic()
        from sky_data.dedup import deduplicate

        deduped = deduplicate(loaded.problems, cfg.dedup, progress=cfg.progress)
        write_jsonl_atomic(out / "dedup_dropped.jsonl", (asdict(d) for d in deduped.dropped))
        for d in deduped.dropped:
            ledger.add(d.source, f"dropped_{d.reason}")
        problems = deduped.kept
        timings["dedup"] = time.monotonic() - t
        events.write("dedup", kept=len(problems), dropped=len(deduped.dropped))

        # ------------------------------------------------------------------ 3. difficulty filter (optional)
        if cfg.difficulty.enabled:
            t = time.monotonic()
            problems = rate_difficulty(problems, cfg, clients, cache, ledger, out)
            timings["difficulty"] = time.monotonic() - t
            events.write("difficulty", kept=len(problems))

        # ------------------------------------------------------------------ 4. generate
        t = time.monotonic()
        teacher = cfg.teacher
        system = system_prompt(teacher.system_prompt)
        asked = {p.id: chat(system, user_prompt(p)) for p in problems}
        by_id = {p.id: p for p in problems}
        answers = ask(clients, "teacher", teacher, cache, ledger,
                      [(f"generate:{p.id}", p, asked[p.id]) for p in problems], progress=cfg.progress)
        timings["generate"] = time.monotonic() - t
        events.write("generate", problems=len(problems), answered=len(answers))

        # samples: one dict per teacher sample; `text` is what is judged and exported, `reason` why it was not
        samples: list[dict[str, Any]] = []
        for p in problems:
            gen = answers.get(f"generate:{p.id}")
            if gen is None:
                continue  # refused by the server: recorded by ask()
            for i, (text, finish) in enumerate(zip(gen.texts, gen.finish_reasons)):
                s = {"problem_id": p.id, "source": p.source, "index": i, "teacher": text, "text": text,
                     "reason": None}
                if finish == "length":
                    s["reason"] = "truncated"
                samples.append(s)

        # ------------------------------------------------------------------ 5. rewrite (optional)
        if cfg.rewrite.enabled:
            t = time.monotonic()
            rw = cfg.rewrite
            if rw.prefilter:
                live = [s for s in samples if s["reason"] is None]
                checks = judge_cached(verdicts, [(by_id[s["problem_id"]], s["teacher"]) for s in live], False, cfg)
                for s, c in zip(live, checks):
                    if not c.ok:
                        s["reason"] = f"prefilter_{c.reason}"
            template = load_prompt("rewrite", rw.prompt)
            live = [s for s in samples if s["reason"] is None]
            rewrites = ask(clients, "rewrite", rw, cache, ledger,
                           [(f"rewrite:{s['problem_id']}:{s['index']}", by_id[s["problem_id"]],
                             chat(None, render(template, problem=user_prompt(by_id[s["problem_id"]]),
                                               trace=s["teacher"])))
                            for s in live], progress=cfg.progress)
            for s in live:
                gen = rewrites.get(f"rewrite:{s['problem_id']}:{s['index']}")
                if gen is None:
                    s["reason"] = "rewrite_error"
                elif gen.finish_reasons[0] == "length":
                    s["reason"] = "rewrite_truncated"
                else:
                    s["text"] = gen.texts[0]
            timings["rewrite"] = time.monotonic() - t

        # ------------------------------------------------------------------ 6. verify and select
        t = time.monotonic()
        live = [s for s in samples if s["reason"] is None]
        checks = judge_cached(verdicts, [(by_id[s["problem_id"]], s["text"]) for s in live], True, cfg)
        kept_per_problem: Counter = Counter()
        for s, c in zip(live, checks):
            if not c.ok:
                s["reason"] = c.reason
            elif kept_per_problem[s["problem_id"]] >= cfg.select.per_problem:
                s["reason"] = "surplus"  # verified, but the problem already has select.per_problem samples
            else:
                kept_per_problem[s["problem_id"]] += 1
                s["kept"] = True
        for s in samples:
            s.setdefault("kept", False)
            ledger.add(s["source"], "samples")
            if s["kept"]:
                ledger.add(s["source"], "kept")
            else:
                ledger.add(s["source"], f"rejected:{reason_kind(s['reason'])}")
        write_jsonl_atomic(out / "samples.jsonl", samples)
        timings["select"] = time.monotonic() - t

        # ------------------------------------------------------------------ 7. export
        sft_system = system_prompt(teacher.system_prompt or "sky_t1")
        records = [{"system": sft_system,
                    "conversations": [{"from": "user", "value": user_prompt(by_id[s["problem_id"]])},
                                      {"from": "assistant", "value": s["text"].strip()}]}
                   for s in samples if s["kept"]]
        write_jsonl_atomic(out / "sft.jsonl", records)
        report = build_report(cfg, out, ledger, cache, timings, len(records), len(problems))
        report["dedup"] = deduped.report
        write_json_atomic(out / "report.json", report)
        events.write("done", records=len(records))
        if cfg.progress:
            print(summary(report))
        return report
    finally:
        clients.close()
        cache.close()
        verdicts.close()


# ---------------------------------------------------------------------------------------------------------
# Asking models, through the cache


def chat(system: str | None, user: str) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


class Clients:
    """The backends of the run's stages, built on first use (a fully cached run starts no engine)."""

    def __init__(self, given: dict[str, Backend]) -> None:
        self.backends = given
        self.built: list[Backend] = []

    def get(self, stage: str, llm: LLMCfg) -> Backend:
        if stage not in self.backends:
            self.backends[stage] = build_backend(stage, llm)
            self.built.append(self.backends[stage])
        return self.backends[stage]

    def close(self) -> None:
        for b in self.built:
            b.close()


def build_backend(stage: str, llm: LLMCfg) -> Backend:
    """The backend of `llm.backend` with the config's arguments; `extra` keys must be the constructor's own."""
    extra = dict(llm.extra)
    if llm.backend in ("openai", "ray"):
        kwargs = dict(model=llm.model, base_url=llm.base_url, api_key_env=llm.api_key_env,
                      max_retries=llm.max_retries, timeout_s=llm.timeout_s, errors="record")
        if llm.backend == "openai":  # ray's `concurrency` counts actors (or engine replicas): set it in `extra`
            kwargs["concurrency"] = llm.concurrency
    elif llm.backend == "replay":
        kwargs = {}
    else:
        kwargs = dict(model=llm.model)
    kwargs.update(extra)
    module, name = BACKEND_CLASSES[llm.backend]
    cls = getattr(importlib.import_module(module), name)  # light: the engines themselves import on construction
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown:
        raise ValueError(f"{stage}.extra has argument(s) the {llm.backend} backend does not take: "
                         f"{', '.join(unknown)}; it takes {', '.join(p for p in params if p != 'self')}")
    return make_backend(llm.backend, **kwargs)


BACKEND_CLASSES = {"vllm": ("sky_data.backends.vllm", "VLLMBackend"),
                   "openai": ("sky_data.backends.openai", "OpenAIBackend"),
                   "ray": ("sky_data.backends.ray", "RayBackend"),
                   "transformers": ("sky_data.backends.hf", "TransformersBackend"),
                   "replay": ("sky_data.backends.replay", "ReplayBackend")}


def ask(clients: Clients, stage: str, llm: LLMCfg, cache: RequestCache, ledger: Ledger,
        items: list[tuple[str, Problem, list[dict[str, str]]]], progress: bool) -> dict[str, Generation]:
    """The answers to `items` (request key, problem, messages): from the cache, else from the stage's backend,
    each written to the cache the moment it arrives. Requests the server refused are left out (and counted)."""
    sampling = SamplingConfig(n=llm.n, temperature=llm.temperature, top_p=llm.top_p, max_tokens=llm.max_tokens,
                              seed=llm.seed)
    model = llm.model or f"replay:{llm.extra.get('path')}"
    answers: dict[str, Generation] = {}
    todo: list[tuple[str, Problem, list[dict[str, str]], str]] = []
    for key, problem, messages in items:
        h = request_hash(model, messages, sampling, key)
        gen = cache.get(h)
        if gen is not None:
            answers[key] = gen
            ledger.add(problem.source, f"{stage}_from_cache")
        else:
            todo.append((key, problem, messages, h))
    if not todo:
        return answers

    backend = clients.get(stage, llm)
    chunk = len(todo) if backend.name in ("openai", "ray") else llm.chunk_size  # servers stream every answer
    errors = AppendLog(cache.log.path.with_name("errors.jsonl"))

    def arrived(batch: list[tuple[str, Problem, list[dict[str, str]], str]]) -> Callable[[int, Generation], None]:
        def on_result(i: int, gen: Generation) -> None:
            key, problem, _, h = batch[i]
            ledger.add(problem.source, f"{stage}_requests")
            if gen.error is not None:
                ledger.add(problem.source, f"{stage}_errors")
                errors.append({"stage": stage, "key": key, "error": gen.error, "time": round(time.time(), 3)})
                return
            cost = request_cost(gen, llm)
            ledger.add(problem.source, f"{stage}_prompt_tokens", gen.prompt_tokens or 0)
            ledger.add(problem.source, f"{stage}_completion_tokens", completion_tokens(gen) or 0)
            ledger.add(problem.source, f"{stage}_usd", cost or 0.0)
            cache.put(h, stage, key, gen, cost)
            answers[key] = gen
        return on_result

    try:
        for start in range(0, len(todo), chunk):
            batch = todo[start:start + chunk]
            backend.generate([Request(m, key=k) for k, _, m, _ in batch], sampling, progress=progress,
                             on_result=arrived(batch))
    finally:
        errors.close()
    return answers


def completion_tokens(gen: Generation) -> int | None:
    """All new tokens of a request: the per-sample counts, else the server's total (usage), else None."""
    if all(t is not None for t in gen.completion_tokens):
        return sum(gen.completion_tokens)
    return gen.total_completion_tokens


def request_cost(gen: Generation, llm: LLMCfg) -> float | None:
    """USD of one answered request at the stage's prices; None when the server did not say how many tokens."""
    if llm.price_input == 0 and llm.price_output == 0:
        return 0.0
    out = completion_tokens(gen)
    if gen.prompt_tokens is None or out is None:
        return None
    return (gen.prompt_tokens * llm.price_input + out * llm.price_output) / 1e6


# ---------------------------------------------------------------------------------------------------------
# Judging, through the verdict cache


class VerdictCache:
    """Verdicts by (problem, mode, settings, text): a killed run does not run the sandbox again for them."""

    def __init__(self, path: Path) -> None:
        self.log = AppendLog(path)
        self.by_key = {r["key"]: Check(bool(r["ok"]), str(r["reason"])) for r in self.log.records
                       if isinstance(r.get("key"), str) and "ok" in r and "reason" in r}

    @staticmethod
    def key(problem: Problem, text: str, require_format: bool, cfg: DataConfig) -> str:
        s = json.dumps([problem.id, require_format, cfg.select.math_timeout_s, cfg.select.code_timeout_s, text])
        return hashlib.sha256(s.encode()).hexdigest()

    def put(self, key: str, check: Check) -> None:
        self.by_key[key] = check
        self.log.append({"key": key, "ok": check.ok, "reason": check.reason})

    def close(self) -> None:
        self.log.close()


def judge_cached(verdicts: VerdictCache, items: list[tuple[Problem, str]], require_format: bool,
                 cfg: DataConfig) -> list[Check]:
    keys = [VerdictCache.key(p, t, require_format, cfg) for p, t in items]
    todo = [i for i, k in enumerate(keys) if k not in verdicts.by_key]
    desc = "verify" if require_format else "prefilter"
    bar = tqdm(total=len(todo), desc=desc, unit="sample", disable=not cfg.progress or not todo)
    for start in range(0, len(todo), JUDGE_CHUNK):
        batch = todo[start:start + JUDGE_CHUNK]
        checks = judge([items[i] for i in batch], require_format, math_timeout_s=cfg.select.math_timeout_s,
                       code_timeout_s=cfg.select.code_timeout_s, workers=cfg.select.workers)
        for i, c in zip(batch, checks):
            verdicts.put(keys[i], c)
        bar.update(len(batch))
    bar.close()
    return [verdicts.by_key[k] for k in keys]


# ---------------------------------------------------------------------------------------------------------
# Difficulty


_RATING = re.compile(r"(?<![\d.])(10|[1-9])(?:\.\d+)?(?![\d.])")


def parse_rating(text: str) -> float | None:
    """The first rating 1-10 in a reply ("7", "Rating: 7/10", "**8**"); None when there is none."""
    m = _RATING.search(text)
    return float(m.group(0)) if m else None


def rate_difficulty(problems: list[Problem], cfg: DataConfig, clients: Clients, cache: RequestCache,
                    ledger: Ledger, out: Path) -> list[Problem]:
    d = cfg.difficulty
    template = load_prompt("difficulty", "v1")
    answers = ask(clients, "difficulty", d, cache, ledger,
                  [(f"difficulty:{p.id}", p, chat(None, render(template, problem=p.question))) for p in problems],
                  progress=cfg.progress)
    kept, rows = [], []
    for p in problems:
        gen = answers.get(f"difficulty:{p.id}")
        rating = parse_rating(gen.texts[0]) if gen is not None else None
        bounds = d.keep.get(p.source) or d.keep.get(p.source.split("/")[0])
        keep = bounds is None or (rating is not None and bounds[0] <= rating <= bounds[1])
        rows.append({"problem_id": p.id, "source": p.source, "rating": rating, "kept": keep})
        if keep:
            kept.append(p)
        else:
            ledger.add(p.source, "dropped_difficulty" if rating is not None else "dropped_unrated")
    write_jsonl_atomic(out / "difficulty.jsonl", rows)
    return kept


# ---------------------------------------------------------------------------------------------------------
# Report


class Ledger:
    """Counters per source ("numina/math": {"problems": 10, "teacher_requests": 10, ...}). Thread-safe enough:
    the backends call on_result from one worker thread at a time."""

    def __init__(self) -> None:
        self.by_source: dict[str, Counter] = defaultdict(Counter)

    def add(self, source: str, key: str, amount: float = 1) -> None:
        self.by_source[source][key] += amount

    def total(self) -> Counter:
        out: Counter = Counter()
        for c in self.by_source.values():
            out.update(c)
        return out


def reason_kind(reason: str | None) -> str:
    """The reason without its detail ("wrong_answer: not equivalent" -> "wrong_answer")."""
    return (reason or "unknown").split(":", 1)[0]


def build_report(cfg: DataConfig, out: Path, ledger: Ledger, cache: RequestCache, timings: dict[str, float],
                 records: int, problems: int) -> dict:
    def rounded(c: Counter) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in sorted(c.items())}

    answered = cache.records()
    spent_all_runs = sum(r.get("cost_usd") or 0.0 for r in answered)
    unknown_cost = sum(1 for r in answered if r.get("cost_usd") is None)
    total = ledger.total()
    return {
        "out_dir": str(out),
        "sft_records": records,
        "problems_after_filters": problems,
        "totals": rounded(total),
        "sources": {s: rounded(c) for s, c in sorted(ledger.by_source.items())},
        "money": {"this_run_usd": round(sum(v for k, v in total.items() if k.endswith("_usd")), 6),
                  "all_runs_usd": round(spent_all_runs, 6), "requests_with_unknown_cost": unknown_cost},
        "cached_answers": len(cache),
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "teacher": {"backend": cfg.teacher.backend, "model": cfg.teacher.model, "n": cfg.teacher.n,
                    "temperature": cfg.teacher.temperature, "max_tokens": cfg.teacher.max_tokens},
        "rewrite": {"enabled": cfg.rewrite.enabled, "model": cfg.rewrite.model, "prompt": cfg.rewrite.prompt},
    }


def summary(report: dict) -> str:
    t = report["totals"]
    rejected = {k.split(":", 1)[1]: v for k, v in t.items() if k.startswith("rejected:")}
    lines = [f"sky_data: {report['sft_records']} SFT records in {report['out_dir']}/sft.jsonl",
             f"  problems {t.get('problems', 0)}, after dedup/filters {report['problems_after_filters']}, "
             f"source records rejected {t.get('source_rejected', 0)}",
             f"  teacher requests sent {t.get('teacher_requests', 0)}, from cache "
             f"{t.get('teacher_from_cache', 0)}, refused {t.get('teacher_errors', 0)}",
             f"  samples {t.get('samples', 0)}, kept {t.get('kept', 0)}, rejected "
             + (", ".join(f"{k} {v}" for k, v in sorted(rejected.items(), key=lambda kv: -kv[1])) or "none"),
             f"  spent ${report['money']['this_run_usd']:.4f} this run (${report['money']['all_runs_usd']:.4f} "
             f"in all runs); seconds: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items())]
    return "\n".join(lines)
