"""The toy addition task (issue 11): traces checked by hand and by the real verifier, splits that never leak."""

from __future__ import annotations

import json
import re

import pytest

from sky_data.schema import Problem
from sky_data.select import format_error, judge
from sky_data.toy import (
    TOY_SYSTEM,
    addition_answer_only,
    addition_trace,
    read_sums,
    split_sums,
    write_problems,
    write_seed_set,
)
from sky_data.verify import extract_answer

ALL = [(a, b) for a in range(10, 100) for b in range(10, 100)]


def test_a_trace_with_carries_reads_as_worked_by_hand():
    # 47 + 58: ones 7 + 8 = 15 (write 5, carry 1); tens 4 + 5 + 1 = 10 (write 0, carry 1); hundreds 1 -> 105
    assert addition_trace(47, 58) == (
        "<|begin_of_thought|>\n\n47 + 58, digit by digit.\n\nOnes: 7 + 8 = 15. Write 5, carry 1."
        "\n\nTens: 4 + 5 + 1 = 10. Write 0, carry 1.\n\nHundreds: the carry, 1. Write 1.\n\nSo 47 + 58 = 105."
        "\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n47 + 58 = \\boxed{105}\n\n<|end_of_solution|>")
    # 12 + 30: no carry anywhere, and no hundreds step
    assert "Ones: 2 + 0 = 2. Write 2, carry 0.\n\nTens: 1 + 3 + 0 = 4. Write 4, carry 0.\n\nSo 12 + 30 = 42." \
        in addition_trace(12, 30)
    assert "Hundreds" not in addition_trace(12, 30)
    # 55 + 45: the ones carry, the tens carry too
    assert "Ones: 5 + 5 = 10. Write 0, carry 1.\n\nTens: 5 + 4 + 1 = 10. Write 0, carry 1." in addition_trace(55, 45)


def test_every_one_of_the_8100_traces_states_true_digit_arithmetic_and_boxes_the_sum():
    for a, b in ALL:
        text = addition_trace(a, b)
        assert format_error(text) is None, (a, b)
        assert extract_answer(text) == str(a + b), (a, b)
        # every "x + y (+ c) = z" the thought states is true arithmetic
        for lhs, rhs in re.findall(r"((?:\d+ \+ )+\d+) = (\d+)", text):
            assert sum(int(t) for t in lhs.split(" + ")) == int(rhs), (a, b, lhs, rhs)
        written = "".join(re.findall(r"Write (\d)", text))[::-1]
        assert int(written) == a + b, (a, b, written)  # the digits written, read back, are the sum
        carries = [int(c) for c in re.findall(r"carry (\d)\.", text)]
        assert carries == [(a % 10 + b % 10) // 10, (a + b) // 100], (a, b)


def test_the_real_verifier_keeps_traces_and_rejects_a_wrong_sum():
    items = []
    for a, b in ALL[::400]:
        p = Problem.make(domain="math", question=f"What is {a} + {b}?", answer=str(a + b), source="toy")
        items += [(p, addition_trace(a, b)), (p, addition_trace(a, b).replace(f"{{{a + b}}}", f"{{{a + b + 1}}}")),
                  (p, addition_answer_only(a, b))]
    checks = judge(items, require_format=True)
    assert [c.ok for c in checks] == [True, False, True] * (len(items) // 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_splits_are_disjoint_even_as_mirror_pairs_sized_and_seeded(seed):
    s = split_sums(seed=seed)
    assert {k: len(v) for k, v in s.items()} == {"teacher": 3000, "problems": 1000, "eval": 60}
    unordered = {k: {tuple(sorted(p)) for p in v} for k, v in s.items()}
    assert not unordered["teacher"] & unordered["problems"]
    assert not unordered["teacher"] & unordered["eval"] and not unordered["problems"] & unordered["eval"]
    assert all(len(set(v)) == len(v) for v in s.values())
    assert split_sums(seed=seed) == s and split_sums(seed=seed + 7) != s
    with pytest.raises(ValueError, match="do not fit"):
        split_sums(teacher=8000, problems=200)


def test_files_are_what_sky_train_and_sky_data_read(tmp_path, tokenizer):
    from sky_data.config import SourceCfg
    from sky_data.sources import load_source
    from sky_train.data import build_samples, load_conversations

    s = split_sums(seed=0, teacher=6, problems=5, eval=0)
    assert write_seed_set(tmp_path / "seed.jsonl", s["teacher"]) == 6
    convs = load_conversations(tmp_path / "seed.jsonl")
    samples, _ = build_samples(convs, tokenizer, max_seq_len=2048)
    assert len(samples) == 6 and convs[0].messages[1]["content"].startswith("Return your final response")
    write_problems(tmp_path / "p.jsonl", s["problems"])
    loaded = load_source(SourceCfg(name="local", path=str(tmp_path / "p.jsonl")), progress=False)
    assert [(p.question, p.answer) for p in loaded.problems] == [(f"What is {a} + {b}?", str(a + b))
                                                                  for a, b in s["problems"]]
    assert read_sums(tmp_path / "p.jsonl") == s["problems"]
    control = tmp_path / "control.jsonl"
    write_seed_set(control, s["teacher"], thought=False)
    assert "Ones:" not in control.read_text()
    assert json.loads(control.read_text().splitlines()[0])["system"] == TOY_SYSTEM


@pytest.mark.parametrize("bad", [(9, 10), (10, 100), (True, 10), (10.0, 20)])
def test_operands_must_be_two_digit_integers(bad):
    with pytest.raises(ValueError, match="two-digit"):
        addition_trace(*bad)
