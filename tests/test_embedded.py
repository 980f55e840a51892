"""Tests for the shipped tiny SFT set and tokenizer (sky_train/embedded), checked against references written
here by hand: expected chat renderings, answers recomputed from the problem text, length-shape bounds.

    python -m pytest tests/test_embedded.py -q
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from sky_train.embedded import EMBEDDED_DATA, EMBEDDED_TOKENIZER, SKY_T1_SYSTEM_PROMPT, load_tiny_tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MARKERS = ["<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>", "<|end_of_solution|>"]
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
ASSISTANT_RE = re.compile(
    r"<\|begin_of_thought\|>\n\n(?P<thought>.+?)\n\n<\|end_of_thought\|>\n\n"
    r"<\|begin_of_solution\|>\n\n(?P<solution>.*?)The answer is \$\\boxed\{(?P<answer>[^{}]+)\}\$\.\n\n"
    r"<\|end_of_solution\|>",
    re.DOTALL,
)


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


@pytest.fixture(scope="module")
def records() -> list[dict]:
    with open(EMBEDDED_DATA, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _nearest_rank(xs: list[int], q: float) -> int:
    xs = sorted(xs)
    return xs[max(0, math.ceil(len(xs) * q) - 1)]


# ---- tokenizer -------------------------------------------------------------------------------------


def test_vocab_is_exactly_1024_with_every_id_below_it(tok) -> None:
    assert len(tok) == 1024
    assert sorted(tok.get_vocab().values()) == list(range(1024))


def test_special_tokens_are_qwen25s_single_ids_at_the_end(tok) -> None:
    ids = [tok.encode(s, add_special_tokens=False) for s in SPECIALS]
    assert ids == [[1021], [1022], [1023]]
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 1023
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 1021
    assert tok.bos_token is None
    assert tok.model_max_length == 32768
    # Special tokens are matched inside running text too, not split into pieces.
    assert tok.encode("a<|im_end|>\n", add_special_tokens=False)[1] == 1023


def test_thought_markers_are_plain_text_not_special_tokens(tok) -> None:
    for marker in MARKERS:
        ids = tok.encode(marker, add_special_tokens=False)
        assert len(ids) > 1, marker
        assert not set(ids) & set(tok.all_special_ids)
        assert marker not in tok.get_vocab()
        assert tok.decode(ids) == marker
    assert set(tok.all_special_tokens) == set(SPECIALS)


@pytest.mark.parametrize(
    "text",
    [
        "<|begin_of_thought|>\n\nOkay, let's see. 12 + 30 = 42.\n\n<|end_of_thought|>",
        "The answer is $\\boxed{3, 7, 19}$.",
        "héllo café — naïve Σ∑ 日本語 😀 ≤ × ÷",
        "  leading spaces,\ttabs\r\nand  double  spaces  ",
        "<|im_start|>user\nHi<|im_end|>\n",
        "",
    ],
)
def test_decode_inverts_encode_on_hand_written_text(tok, text: str) -> None:
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_decode_inverts_encode_on_shipped_records(tok, records: list[dict]) -> None:
    texts = [SKY_T1_SYSTEM_PROMPT]
    for r in records[::20]:
        texts += [t["value"] for t in r["conversations"]]
    for text in texts:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_encoding_adds_no_bos_or_eos(tok) -> None:
    assert tok("x y")["input_ids"] == tok("x y", add_special_tokens=False)["input_ids"]


# ---- chat template ---------------------------------------------------------------------------------


def test_chat_template_inserts_qwen_default_system_for_two_messages(tok) -> None:
    messages = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]
    expected = (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n"
    )
    assert tok.apply_chat_template(messages, tokenize=False) == expected


def test_chat_template_keeps_a_given_system_for_three_messages(tok) -> None:
    messages = [
        {"role": "system", "content": "Think first."},
        {"role": "user", "content": "Sort 3, 1."},
        {"role": "assistant", "content": "<|begin_of_thought|>\n\n1, 3\n\n<|end_of_thought|>"},
    ]
    expected = (
        "<|im_start|>system\nThink first.<|im_end|>\n"
        "<|im_start|>user\nSort 3, 1.<|im_end|>\n"
        "<|im_start|>assistant\n<|begin_of_thought|>\n\n1, 3\n\n<|end_of_thought|><|im_end|>\n"
    )
    assert tok.apply_chat_template(messages, tokenize=False) == expected


def test_chat_template_generation_prompt(tok) -> None:
    with_system = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert tok.apply_chat_template(with_system, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tok.apply_chat_template(with_system[1:], tokenize=False, add_generation_prompt=True) == (
        f"<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )


def test_rendered_chat_tokenizes_role_headers_as_special_ids(tok) -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    ids = tok.encode(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)
    assert ids[0] == 1022 and ids.count(1022) == 2 and ids.count(1023) == 2


# ---- shipped records -------------------------------------------------------------------------------


def test_system_prompt_is_the_published_sky_t1_text() -> None:
    p = SKY_T1_SYSTEM_PROMPT
    assert p.startswith("Your role as an assistant involves thoroughly exploring questions through a systematic long")
    assert p.endswith("Now, try to solve the following question through the above guidelines:")
    assert "analisying questions" in p  # the published typo
    assert "{thought with steps separated with '\\n\\n'}" in p  # literal backslash-n, as in the data
    assert "\n" not in p
    for marker in MARKERS:
        assert p.count(marker) == 1


def test_every_record_has_sky_t1_sharegpt_structure(records: list[dict]) -> None:
    assert len(records) == 400
    assert EMBEDDED_DATA.stat().st_size < 1_500_000
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        assert list(r) == ["id", "system", "conversations"]
        assert r["system"] == SKY_T1_SYSTEM_PROMPT
        user, assistant = r["conversations"]
        assert list(user) == ["from", "value"] and user["from"] == "user" and user["value"]
        assert list(assistant) == ["from", "value"] and assistant["from"] == "assistant"
        m = ASSISTANT_RE.fullmatch(assistant["value"])
        assert m, r["id"]
        assert all(step.strip() for step in m["thought"].split("\n\n")), r["id"]
        for marker in MARKERS:
            assert assistant["value"].count(marker) == 1


def _expected_answer(task: str, problem: str) -> str:
    """Recompute the answer from the problem text alone, with no code from the generator."""
    nums = [int(x) for x in re.findall(r"\d+", problem)]
    if task == "addition":
        a, b = nums
        return str(a + b)
    if task == "multiplication":
        a, b = nums
        return str(a * b)
    if task == "sorting":
        return ", ".join(str(x) for x in sorted(nums))
    if task == "list_sum":
        return str(sum(nums))
    if task == "gcd":
        a, b = nums
        return str(math.gcd(a, b))
    if task == "counting":
        letter, text = re.findall(r'"([^"]*)"', problem)
        return str(text.count(letter))
    raise AssertionError(f"unknown task {task}")


def test_every_boxed_answer_is_correct(records: list[dict]) -> None:
    seen: set[str] = set()
    for r in records:
        task = r["id"].rsplit("-", 1)[1]
        seen.add(task)
        problem, assistant = (t["value"] for t in r["conversations"])
        answer = ASSISTANT_RE.fullmatch(assistant)["answer"]
        assert answer == _expected_answer(task, problem), r["id"]
    assert seen == {"addition", "multiplication", "sorting", "list_sum", "gcd", "counting"}


# "a + b (+ c...) = d", "a × b = c", "a ÷ b = c", "a - b = c", not counting a chain's tail as its own equation.
CHAIN_EQ = re.compile(r"(?<![\d)] [-+×÷] )(?<!\d)(\d+(?: [-+×÷] \d+)+) = (\d+)(?!\d| [-+×÷])")
EUCLID_EQ = re.compile(r"(\d+) = (\d+) × (\d+) \+ (\d+)")
PLUS_IS = re.compile(r"= (\d+), plus (\d+) is (\d+)")
MOD9 = re.compile(r"(\d+) mod 9 = (\d+)")
DIGIT_SUM = re.compile(r"digit sum of (\d+) is (\d+)")


def test_every_equation_stated_in_a_trace_is_true(records: list[dict]) -> None:
    checked = 0
    for r in records:
        text = r["conversations"][1]["value"].replace(" (carry)", "")
        for m in CHAIN_EQ.finditer(text):
            terms = re.split(r" ([-+×÷]) ", m[1])
            value = int(terms[0])
            for op, x in zip(terms[1::2], map(int, terms[2::2])):  # every chain here has a single operator kind
                if op == "÷":
                    assert value % x == 0, (r["id"], m[0])
                value = {"+": value + x, "-": value - x, "×": value * x, "÷": value // max(x, 1)}[op]
            assert value == int(m[2]), (r["id"], m[0])
            checked += 1
        for m in EUCLID_EQ.finditer(text):
            x, q, y, rem = map(int, m.groups())
            assert x == q * y + rem and 0 <= rem < y, (r["id"], m[0])
            checked += 1
        for m in PLUS_IS.finditer(text):
            assert int(m[1]) + int(m[2]) == int(m[3]), (r["id"], m[0])
        for m in MOD9.finditer(text):
            assert int(m[1]) % 9 == int(m[2]), (r["id"], m[0])
        for m in DIGIT_SUM.finditer(text):
            assert sum(map(int, m[1])) == int(m[2]), (r["id"], m[0])
    assert checked > 1000  # the patterns really matched the traces


def test_addition_and_sorting_answers_by_hand() -> None:
    # The reference itself, on cases worked by hand.
    assert _expected_answer("addition", "What is 4821 + 937?") == "5758"
    assert _expected_answer("sorting", "Sort the following numbers in ascending order: 42, 7, 19, 7.") == "7, 7, 19, 42"
    assert _expected_answer("counting", 'How many times does the letter "r" appear in "strawberry"?') == "3"


def test_trace_lengths_are_right_skewed_and_fit_the_context(tok, records: list[dict]) -> None:
    assistant = [len(tok.encode(r["conversations"][1]["value"], add_special_tokens=False)) for r in records]
    median, p90 = _nearest_rank(assistant, 0.5), _nearest_rank(assistant, 0.9)
    assert 120 <= median <= 250
    assert max(assistant) / median >= 4
    assert p90 / median >= 2
    assert min(assistant) <= 60 and max(assistant) <= 1000
    rendered = []
    for r in records:
        messages = [{"role": "system", "content": r["system"]}] + [
            {"role": t["from"], "content": t["value"]} for t in r["conversations"]
        ]
        rendered.append(len(tok.encode(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)))
    assert max(rendered) <= 1200


# ---- generator -------------------------------------------------------------------------------------


def test_generator_reproduces_the_shipped_files_byte_for_byte(tmp_path: Path) -> None:
    from sky_train.embedded.generate import main

    main(["--out-dir", str(tmp_path)])
    assert (tmp_path / EMBEDDED_DATA.name).read_bytes() == EMBEDDED_DATA.read_bytes()
    for name in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
        assert (tmp_path / "tokenizer" / name).read_bytes() == (EMBEDDED_TOKENIZER / name).read_bytes(), name
