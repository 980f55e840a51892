"""The toy task of the recipe at laptop scale (issue 11): two-digit addition, reasoned the way Sky-T1 reasons.

    from sky_data.toy import addition_trace, split_sums, write_seed_set, write_problems
    splits = split_sums(seed=0)                  # disjoint teacher / problems / eval sums
    write_seed_set("toy/seed.jsonl", splits["teacher"])   # Sky-T1 SFT records: the stand-in for QwQ's traces
    write_problems("toy/problems.jsonl", splits["problems"])  # a sky_data local source

A trace works digit by digit, as a person would and as the real recipe's long thoughts do on harder problems:
the ones (and their carry), the tens plus the carry, the hundreds when the tens carry, then the sum in
`\\boxed{}` inside the four Sky-T1 markers. A 2-layer Qwen2 (2M parameters) trained from scratch on 2,000 such
traces solves about a third of unseen sums after 375 steps (~2.5 minutes on 2 CPU cores) and over 90% after ~560
(3,000 traces, 3 epochs); the issue measured that bare answers teach almost no arithmetic (2/60). Learning is
sudden, so a briefly trained model is an imperfect teacher, which leaves rejection sampling something to reject.

Splits are of *unordered* pairs: 12 + 30 and 30 + 12 always land in the same split, so no held-out sum is
the mirror image of one the teacher or a student was trained on.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from sky_data.prompts import MATH_USER
from sky_data.store import write_jsonl_atomic

__all__ = ["HIGH", "LOW", "TOY_SYSTEM", "addition_answer_only", "addition_question", "addition_trace", "read_sums",
           "split_sums", "write_problems", "write_seed_set"]

LOW, HIGH = 10, 99  # two-digit operands, both ends included
# The toy's system prompt: Sky-T1's own (SKY_T1_SYSTEM_PROMPT) is ~220 tokens with the tiny tokenizer, twice a
# whole trace, and would cost a model trained from scratch most of its compute on a constant prefix.
TOY_SYSTEM = "Think digit by digit, then answer."


def addition_question(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def addition_trace(a: int, b: int) -> str:
    """The Sky-T1-format reasoning for a + b, digit by digit (see the module docstring)."""
    _check(a, b)
    ones = a % 10 + b % 10
    carry = ones // 10
    tens = a // 10 + b // 10 + carry
    steps = [f"{a} + {b}, digit by digit.",
             f"Ones: {a % 10} + {b % 10} = {ones}. Write {ones % 10}, carry {carry}.",
             f"Tens: {a // 10} + {b // 10} + {carry} = {tens}. Write {tens % 10}, carry {tens // 10}."]
    if tens >= 10:
        steps.append("Hundreds: the carry, 1. Write 1.")
    steps.append(f"So {a} + {b} = {a + b}.")
    thought = "\n\n".join(steps)
    return (f"<|begin_of_thought|>\n\n{thought}\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"
            f"{a} + {b} = \\boxed{{{a + b}}}\n\n<|end_of_solution|>")


def addition_answer_only(a: int, b: int) -> str:
    """The control: the same format and answer, with no digit-by-digit thought."""
    _check(a, b)
    return (f"<|begin_of_thought|>\n\nThe sum is {a + b}.\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"
            f"{a} + {b} = \\boxed{{{a + b}}}\n\n<|end_of_solution|>")


def _check(a: int, b: int) -> None:
    for x in (a, b):
        if isinstance(x, bool) or not isinstance(x, int) or not LOW <= x <= HIGH:
            raise ValueError(f"operands are two-digit integers {LOW}..{HIGH}, got {x!r}")


def split_sums(seed: int = 0, teacher: int = 3000, problems: int = 1000, eval: int = 60
               ) -> dict[str, list[tuple[int, int]]]:
    """Disjoint splits of ordered two-digit sums, drawn from shuffled unordered pairs (a mirror pair stays in
    one split). Each split holds exactly the asked number of ordered sums, in a seeded order. The eval split is
    drawn first, so it depends on `seed` and `eval` alone (sky_eval's `toy_addition` task rebuilds it)."""
    pairs = [(a, b) for a in range(LOW, HIGH + 1) for b in range(a, HIGH + 1)]  # unordered, a <= b
    random.Random(seed).shuffle(pairs)
    want = {"eval": eval, "teacher": teacher, "problems": problems}
    total = sum(want.values())
    if min(want.values()) < 0 or total > (HIGH - LOW + 1) ** 2:
        raise ValueError(f"split sizes {want} do not fit the {(HIGH - LOW + 1) ** 2} two-digit sums")
    out: dict[str, list[tuple[int, int]]] = {}
    it = iter(pairs)
    for name, n in want.items():
        sums: list[tuple[int, int]] = []
        while len(sums) < n:
            a, b = next(it)
            sums.append((a, b))
            if a != b and len(sums) < n:
                sums.append((b, a))
        out[name] = sums
    return out


def write_seed_set(path: str | Path, sums: list[tuple[int, int]], thought: bool = True,
                   system: str = TOY_SYSTEM) -> int:
    """Sky-T1 SFT records (`system`, `conversations`) for `sums`, the user turn being the one sky_data's teacher
    and sky_eval ask with; `thought=False` writes the answer-only control. Atomic; returns the record count."""
    make = addition_trace if thought else addition_answer_only
    records = ({"system": system,
                "conversations": [{"from": "user", "value": MATH_USER.format(problem=addition_question(a, b))},
                                  {"from": "assistant", "value": make(a, b)}]} for a, b in sums)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_jsonl_atomic(Path(path), records)


def write_problems(path: str | Path, sums: list[tuple[int, int]]) -> int:
    """A sky_data local source: one `{"id", "problem", "answer"}` record per sum. Atomic; returns the count."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_jsonl_atomic(Path(path), ({"id": f"{a}+{b}", "problem": addition_question(a, b),
                                            "answer": str(a + b)} for a, b in sums))


def read_sums(path: str | Path) -> list[tuple[int, int]]:
    """The sums of a file `write_problems` wrote (for checks of disjointness across stages)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            a, b = json.loads(line)["id"].split("+")
            out.append((int(a), int(b)))
    return out
