"""The toy recipe's held-out sums (issue 11): "What is a + b?" for two-digit a and b, answer a + b.

With `data_dir`, the records of `data_dir/toy_addition/test.jsonl` (`id` "a+b", `problem`, `answer`: what
`sky_data.toy.write_problems` writes, and what the toy recipe's decontamination reads); without, the eval split
of `sky_data.toy.split_sums(seed, eval=size)`, built in memory (options `seed`, `size`), the same sums the
recipe holds out with the same seed. The prompt and the scoring are the math ones (the verifier that selected
the training traces), so a model is asked exactly as the recipe's teacher was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sky_eval.tasks.base import Problem, Row, Task, collect, local_file, need, register, task_rows


class ToyAddition(Task):
    name = "toy_addition"
    kind = "math"
    defaults = {"seed": 0, "size": 60}

    def load(self, data_dir: str | Path | None = None, limit: int | None = None, **options: Any) -> list[Problem]:
        opts = self.resolve(options, limit)
        if data_dir is not None:
            rows = task_rows(self, data_dir, opts)
        else:
            rows = _generated(opts["seed"], opts["size"])
        problems = collect(self.name, rows, _parse, limit)
        self.record_options(opts, data_dir)
        return problems

    def record_options(self, opts: dict[str, Any], data_dir: str | Path | None) -> None:
        # the file decides the sums (seed and size are not what was used); else seed and size do (no hub)
        if data_dir is not None:
            self._resolved = {"data_file": str(local_file(data_dir, self.name))}
        else:
            self._resolved = {k: opts[k] for k in self.defaults}


def _generated(seed: Any, size: Any):
    from sky_data.toy import addition_question, split_sums

    for key, value in (("seed", seed), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"task 'toy_addition': option {key!r} must be a non-negative integer, got {value!r}")
    sums = split_sums(seed=seed, teacher=0, problems=0, eval=size)["eval"]
    for i, (a, b) in enumerate(sums):
        yield Row(i, f"toy_addition seed {seed} sum {i}",
                  {"id": f"{a}+{b}", "problem": addition_question(a, b), "answer": str(a + b)})


def _parse(row: Row) -> Problem:
    rec, where = row.record, row.where
    return Problem(id=need(rec, "id", where), question=need(rec, "problem", where),
                   answer=str(need(rec, "answer", where, (int, str))).strip())


register(ToyAddition())
