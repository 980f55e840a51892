"""What a benchmark task is: how to load its problems, turn one into a chat prompt, and score responses.

A task module defines one `Task` subclass instance and registers it (`register`). The runner never looks
inside a problem: it asks the task for the prompt and for verdicts.

Loading, shared by every task (the helpers below the registry):
- `data_dir=DIR` reads `DIR/<task>/test.jsonl` (the layout of ../shared/data); else the `datasets` hub,
  `load_dataset(hub_path, hub_name, split=hub_split)`. Every task takes the options `hub_path`, `hub_name`
  and `hub_split` besides its own (`Task.defaults`); `hub_path` may name a local directory laid out like the
  hub repository, which is how the hub path is tested offline.
- A record is a `Row`: its 0-based index among the source's records (before any filter: an id made from it
  does not move when a filter or `limit` changes), where it came from (`file:line`, or `<hub> row i`), and
  the record. A bad record is a ValueError naming that place and the field.
- `limit` keeps the first N problems that pass the task's filters; reading stops there.
- Problem ids must be unique (as strings: the runner keys responses by `str(id)`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sky_data.sources.rows import (  # noqa: F401  (hub_file, need: re-exported to the task modules)
    Row,
    hub_file,
    hub_rows,
    iter_jsonl,
    jsonl_rows,
    need,
)

__all__ = ["Problem", "PromptConfig", "Row", "Score", "Task", "TASKS", "get_task", "register"]


@dataclass
class Problem:
    id: str | int  # the task's own problem id (math500: unique_id; aime/amc/olympiadbench: id; gsm8k: line index)
    question: str  # the problem statement as the dataset writes it (before any template)
    answer: Any  # math: the reference answer (str); choice: the correct letter; code: the tests
    meta: dict[str, Any] = field(default_factory=dict)  # level, subject, difficulty, options, starter_code, ...


@dataclass
class Score:
    correct: bool
    extracted: str | None  # the answer (or code) taken from the response; None when it gives none
    reason: str  # why: "equivalent", "not equivalent", "no answer", "timeout", "wrong_answer: ...", ...


@dataclass(frozen=True)
class PromptConfig:
    boxed: str = "before"  # where the \boxed{} instruction goes for math: "before" or "after" the problem
    system: str | None = None  # None: no system message; "sky_t1": the Sky-T1 system prompt; else the text itself


class Task:
    name: ClassVar[str]
    kind: ClassVar[str]  # "math" | "choice" | "code"
    # The `datasets` hub source: load_dataset(hub_path, hub_name, split=hub_split). A local dir works too.
    hub_path: ClassVar[str | None] = None
    hub_name: ClassVar[str | None] = None
    hub_split: ClassVar[str] = "test"
    breakdown: ClassVar[tuple[str, ...]] = ()  # meta keys with per-value accuracy in results (level, subject)
    defaults: ClassVar[dict[str, Any]] = {}  # the task's own options (besides hub_path/hub_name/hub_split)
    _resolved: dict[str, Any] | None = None  # what the last `load` used (`options()`)

    def load(self, data_dir: str | Path | None = None, limit: int | None = None, **options: Any) -> list[Problem]:
        """The task's problems, in file order: from `data_dir/<name>/test.jsonl` when given, else the hub."""
        raise NotImplementedError

    def messages(self, problem: Problem, prompt: PromptConfig) -> list[dict[str, str]]:
        """The chat messages that ask the model this problem. Math tasks share the math template (this default);
        the other kinds define their own."""
        if self.kind != "math":
            raise NotImplementedError(f"task {self.name}: kind {self.kind!r} must define messages()")
        from sky_eval.tasks._math import math_messages

        return math_messages(problem, prompt)

    def score(self, items: list[tuple[Problem, str]], workers: int | None = None, timeout_s: float | None = None,
              progress: bool = False) -> list[Score]:
        """One Score per (problem, response), in order. Batch-parallel; never raises for what a response holds.
        Math tasks share `check_math` over a thread pool (this default); the other kinds define their own."""
        if self.kind != "math":
            raise NotImplementedError(f"task {self.name}: kind {self.kind!r} must define score()")
        from sky_eval.tasks._math import score_math

        return score_math(items, workers, timeout_s, progress)

    def options(self) -> dict[str, Any]:
        """The task's settings that change its problems or prompts (recorded in results.json): those of the last
        `load` (its own options, then `data_file` or the hub source), or the defaults before any load."""
        if self._resolved is not None:
            return dict(self._resolved)
        return {**self.defaults, "hub_path": self.hub_path, "hub_name": self.hub_name, "hub_split": self.hub_split}

    def resolve(self, options: dict[str, Any], limit: int | None = None) -> dict[str, Any]:
        """`options` over the defaults; an unknown key (or a bad `limit`) is a ValueError naming the task and
        the valid keys. Called first by `load`, before anything is read or downloaded."""
        check_limit(self.name, limit)
        valid = {**self.defaults, "hub_path": self.hub_path, "hub_name": self.hub_name, "hub_split": self.hub_split}
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"task {self.name!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
                             f"valid options: {', '.join(sorted(valid))}")
        return {**valid, **options}

    def record_options(self, opts: dict[str, Any], data_dir: str | Path | None) -> None:
        """Remember what a load used, for `options()`: the task's options and where the problems came from."""
        own = {k: v for k, v in opts.items() if k in self.defaults}
        if data_dir is not None:
            self._resolved = {**own, "data_file": str(local_file(data_dir, self.name))}
        else:
            self._resolved = {**own, **{k: opts[k] for k in ("hub_path", "hub_name", "hub_split")}}


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    from sky_eval import tasks  # noqa: F401  (imports every task module, which registers itself)

    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    """Records of a JSONL file; a bad line is an error naming the file and line."""
    records = []
    for _, rec in iter_jsonl(Path(path)):
        if limit is not None and len(records) >= limit:
            break
        records.append(rec)
    return records


# ---------------------------------------------------------------------------------------------------------
# Loading helpers, shared by the task modules (the generic row readers live in sky_data.sources.rows)


def local_file(data_dir: str | Path, name: str) -> Path:
    return Path(data_dir) / name / "test.jsonl"


def task_rows(task: Task, data_dir: str | Path | None, opts: dict[str, Any]) -> Iterator[Row]:
    """The task's records: `data_dir/<name>/test.jsonl` when `data_dir` is given, else the hub."""
    if data_dir is not None:
        path = local_file(data_dir, task.name)
        if not path.is_file():
            raise FileNotFoundError(f"task {task.name!r}: no {path} (data_dir holds <task>/test.jsonl)")
        return jsonl_rows([path])
    if not opts.get("hub_path"):
        raise ValueError(f"task {task.name!r} has no hub source: pass data_dir or the option hub_path")
    return hub_rows(opts["hub_path"], opts.get("hub_name"), opts["hub_split"])


def collect(task_name: str, rows: Iterable[Row], parse: Callable[[Row], Problem | None],
            limit: int | None) -> list[Problem]:
    """The problems `parse` makes of `rows` (None: filtered out), the first `limit` of them; ids must be unique."""
    check_limit(task_name, limit)
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    if limit == 0:
        return problems
    for row in rows:
        problem = parse(row)
        if problem is None:
            continue
        key = str(problem.id)
        if key in seen:
            raise ValueError(f"{row.where}: problem id {problem.id!r} repeats (first at {seen[key]})")
        seen[key] = row.where
        problems.append(problem)
        if limit is not None and len(problems) >= limit:
            break
    return problems


def check_limit(task_name: str, limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"task {task_name!r}: limit must be a non-negative integer or None, got {limit!r}")
