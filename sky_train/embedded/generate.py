"""Build the shipped tiny SFT set and its 1024-token tokenizer, deterministically.

    python -m sky_train.embedded.generate                      # writes into sky_train/embedded/
    python -m sky_train.embedded.generate --n 400 --seed 0 --out-dir /tmp/emb

Writes `<out-dir>/sky_t1_tiny.jsonl` (Sky-T1 ShareGPT records) and `<out-dir>/tokenizer/` (a Hugging Face
fast tokenizer), then prints the token-length distribution. Every trace is computed, not sampled, so every
boxed answer is right. Each record's target length is drawn from a log-normal and its problem grown to
match, so that, like real long-CoT data, most traces are short and a few are several times longer: that
tail is what makes packing and loss normalisation matter in the trainer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast

from sky_train.embedded import EMBEDDED_DIR, SKY_T1_SYSTEM_PROMPT

DATA_FILENAME = "sky_t1_tiny.jsonl"
TOKENIZER_DIRNAME = "tokenizer"
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # Qwen2.5 order: ids 1021, 1022, 1023
MAX_CONTENT_TOKENS = 880  # user + assistant, estimated; see build_records
TERSE_BELOW_TOKENS = 80
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Qwen2's pre-tokenizer regex (transformers' Qwen2Tokenizer). \p{N} matches one digit at a time, so every
# number is spelled digit by digit: the tiny model can learn column arithmetic instead of memorising
# multi-digit tokens.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5-Instruct's chat template with the tool-calling branches removed; everything else renders
# byte-for-byte the same, including the default system message when the first message is not a system one.
QWEN25_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" + QWEN_DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (loop.first and message['role'] == 'system') %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

PLACE_NAMES = [
    "ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands", "millions",
    "ten-millions", "hundred-millions", "billions", "ten-billions", "hundred-billions", "trillions",
]  # fmt: skip

OPENERS = ["Okay, let's see.", "Alright.", "Let me think about this.", "Hmm, okay.", "Okay, so."]

# (problem, thought steps, solution body, boxed answer)
Trace = tuple[str, list[str], str, str]


def _place(i: int) -> str:
    return PLACE_NAMES[i] if i < len(PLACE_NAMES) else f"10^{i}"


def _rand_digits(rng: random.Random, n: int) -> int:
    """A uniformly random integer with exactly n digits."""
    return rng.randint(10 ** (n - 1) if n > 1 else 0, 10**n - 1)


def _fmt_list(xs: Iterable[int]) -> str:
    return ", ".join(str(x) for x in xs)


def _mod9_line(x: int) -> str:
    s = sum(int(c) for c in str(x))
    return f"the digit sum of {x} is {s}, and {s} mod 9 = {s % 9}"


# ---- tasks ------------------------------------------------------------------------------------------
# Each task draws a problem of the given size (digits, list length, Euclid steps...) and solves it step by
# step. `terse` drops the restated plan and the verification, as real traces do for easy questions; it is
# how the shortest records get down to a few dozen tokens.


def make_addition(rng: random.Random, size: int, terse: bool) -> Trace:
    a = _rand_digits(rng, size)
    b = _rand_digits(rng, rng.randint(max(1, size - 2), size))
    if rng.random() < 0.5:
        a, b = b, a
    total = a + b
    problem = rng.choice(["What is {a} + {b}?", "Compute {a} + {b}.", "Find the sum {a} + {b}."]).format(a=a, b=b)
    if terse and size <= 2:
        return problem, [f"{a} + {b} = {total}."], f"{a} + {b} = {total}", str(total)
    steps = [] if terse else [
        f"{rng.choice(OPENERS)} I need to add {a} and {b}. I will line the numbers up on the right and add "
        "column by column, starting from the ones place and carrying whenever a column sum reaches 10."
    ]
    da, db = str(a)[::-1], str(b)[::-1]
    carry = 0
    columns: list[str] = []
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else None
        y = int(db[i]) if i < len(db) else None
        terms = [str(t) for t in (x, y) if t is not None] + ([f"{carry} (carry)"] if carry else [])
        s = (x or 0) + (y or 0) + carry
        digit, carry = s % 10, s // 10
        lead = f"{_place(i).capitalize()} column: "
        if x is None or y is None:
            lead += f"only {a if x is not None else b} has a digit here, so "
        line = lead + f"{' + '.join(terms)} = {s}. Write {digit}"
        columns.append(line + (f" and carry {carry}." if carry else ", no carry."))
    steps += columns
    if carry:
        steps.append(f"The last column left a carry of {carry}, so it becomes the leading digit.")
    steps.append(f"Reading the written digits from left to right gives {total}.")
    if not terse:
        if len(columns) > 2 and rng.random() < 0.5:
            # A "wait, let me re-check" step, as real traces have; it restates a column that was right.
            j = rng.randrange(len(columns))
            restated = columns[j].split(": ", 1)[1]
            steps.append(f"Wait, let me double-check the {_place(j)} column. {restated} Yes, that is right.")
        steps.append(
            f"Let me verify by subtracting: {total} - {b} = {total - b}, which is the first number, "
            "so the sum is right."
        )
    solution = (
        f"Adding column by column from the ones place, carrying when a column sum is 10 or more:\n\n{a} + {b} = {total}"
    )
    return problem, steps, solution, str(total)


# (digits of the first factor, digits of the second), cheapest first: long multiplication costs ~ n_a * n_b.
MUL_SHAPES = sorted(
    ((na, nb) for na in range(2, 10) for nb in range(1, min(na, 6) + 1)), key=lambda s: (s[0] * s[1] + s[0], s)
)


def make_multiplication(rng: random.Random, size: int, terse: bool) -> Trace:
    n_a, n_b = MUL_SHAPES[size]
    a, b = max(_rand_digits(rng, n_a), 11), max(_rand_digits(rng, n_b), 2)
    if rng.random() < 0.3:
        a, b = b, a  # the trace always multiplies the longer factor by the digits of the shorter one
    x, y = max(a, b), min(a, b)
    product = a * b
    problem = rng.choice(["What is {a} × {b}?", "Compute {a} × {b}.", "Multiply {a} by {b}."]).format(a=a, b=b)
    steps = [] if terse else [
        f"{rng.choice(OPENERS)} I need to compute {a} × {b}. I will use long multiplication: multiply {x} by "
        f"each digit of {y}, shift each partial product to that digit's place, then add the partial products."
    ]
    partials: list[int] = []
    for j, dc in enumerate(str(y)[::-1]):
        d = int(dc)
        if d == 0:
            steps.append(f"The {_place(j)} digit of {y} is 0, so that partial product is 0.")
            continue
        carry = 0
        parts: list[str] = []
        for xc in str(x)[::-1]:
            p = d * int(xc)
            s = p + carry
            part = f"{d} × {xc} = {p}" + (f", plus {carry} is {s}" if carry else "")
            carry = s // 10
            parts.append(part + (f", write {s % 10} carry {carry}" if carry else f", write {s % 10}"))
        if carry:
            parts.append(f"then write the final carry {carry}")
        line = f"The {_place(j)} digit of {y} is {d}: " + "; ".join(parts) + f". So {x} × {d} = {x * d}."
        if j:
            line += f" Shifted by {j} place{'s' if j > 1 else ''}, the partial product is {x * d * 10**j}."
        steps.append(line)
        partials.append(x * d * 10**j)
    if len(partials) > 1:
        running = partials[0]
        adds: list[str] = []
        for p in partials[1:]:
            adds.append(f"{running} + {p} = {running + p}")
            running += p
        steps.append("Now add the partial products: " + "; ".join(adds) + ".")
    steps.append(f"Therefore {a} × {b} = {product}.")
    if not terse:
        steps.append(
            f"Let me check by casting out nines: {_mod9_line(a)}; {_mod9_line(b)}. Then {a % 9} × {b % 9} = "
            f"{(a % 9) * (b % 9)}, which is {(a % 9) * (b % 9) % 9} mod 9. For the product, {_mod9_line(product)}. "
            "The residues agree, so the product passes the check."
        )
    solution = (
        f"Long multiplication, one partial product per digit of {y}, then adding the partial products:\n\n"
        f"{a} × {b} = {product}"
    )
    return problem, steps, solution, str(product)


def make_sorting(rng: random.Random, size: int, terse: bool) -> Trace:
    hi = rng.choice([20, 99, 99, 999])
    xs = [rng.randint(0, hi) for _ in range(size)]
    problem = rng.choice(
        [
            "Sort the following numbers in ascending order: {xs}.",
            "Arrange these numbers from smallest to largest: {xs}.",
        ]
    ).format(xs=_fmt_list(xs))
    done = sorted(xs)
    if terse and size <= 3:
        steps = [f"The smallest is {done[0]}, then {done[1]}, and the largest is {done[2]}."]
        return problem, steps, _fmt_list(done), _fmt_list(done)
    steps = [] if terse else [
        f"{rng.choice(OPENERS)} There are {size} numbers to sort. I will use selection sort: repeatedly find the "
        "smallest remaining number and append it to the sorted part, until nothing remains."
    ]
    steps.append(f"Start: sorted = [], remaining = [{_fmt_list(xs)}].")
    remaining = list(xs)
    placed: list[int] = []
    k = 0
    while remaining:
        k += 1
        if len(remaining) == 1:
            placed.append(remaining.pop())
            steps.append(f"Pass {k}: only {placed[-1]} remains, so it goes last. Sorted = [{_fmt_list(placed)}].")
            break
        m = min(remaining)
        remaining.remove(m)
        placed.append(m)
        steps.append(
            f"Pass {k}: the smallest of the remaining numbers is {m}. "
            f"Sorted = [{_fmt_list(placed)}], remaining = [{_fmt_list(remaining)}]."
        )
    assert placed == done
    if not terse:
        steps.append(
            f"Check: the sorted list has {len(done)} numbers, the same as the input, and each number is at least "
            f"the one before it: {' ≤ '.join(str(x) for x in done)}."
        )
    solution = f"Selection sort (repeatedly taking the smallest remaining number) gives:\n\n{_fmt_list(done)}"
    return problem, steps, solution, _fmt_list(done)


def make_list_sum(rng: random.Random, size: int, terse: bool) -> Trace:
    hi = rng.choice([20, 99, 999])
    xs = [rng.randint(1, hi) for _ in range(size)]
    total = sum(xs)
    problem = rng.choice(
        ["Find the sum of the numbers {xs}.", "What is the total of {xs}?", "Add up the following numbers: {xs}."]
    ).format(xs=_fmt_list(xs))
    steps = [] if terse else [
        f"{rng.choice(OPENERS)} I need the sum of {size} numbers. I will add them from left to right, keeping a "
        "running total."
    ]
    running = xs[0]
    adds: list[str] = []
    for x in xs[1:]:
        adds.append(f"{running} + {x} = {running + x}.")
        running += x
    if terse:
        steps.append(" ".join(adds))
    else:
        steps += [f"Start with {xs[0]}."] + adds
        back = xs[-1]
        radds: list[str] = []
        for x in reversed(xs[:-1]):
            radds.append(f"{back} + {x} = {back + x}")
            back += x
        steps.append(f"Let me verify by adding in reverse order: {'; '.join(radds)}. Same total, {back}.")
    solution = f"{' + '.join(map(str, xs))} = {total}"
    if not terse:
        solution = f"Adding the numbers one at a time with a running total:\n\n{solution}"
    return problem, steps, solution, str(total)


def make_gcd(rng: random.Random, size: int, terse: bool) -> Trace:
    # Build the pair backwards from the gcd, so `size` is exactly the number of Euclid divisions.
    g = rng.choice([1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15])
    small, big = g, g * rng.randint(2, 4)
    for _ in range(size - 1):
        small, big = big, rng.randint(1, 3) * big + small
    a, b = (big, small) if rng.random() < 0.5 else (small, big)
    problem = rng.choice(
        [
            "Find the greatest common divisor of {a} and {b}.",
            "What is gcd({a}, {b})?",
            "Compute the GCD of {a} and {b}.",
        ]
    ).format(a=a, b=b)
    steps = [] if terse else [
        f"{rng.choice(OPENERS)} I will use the Euclidean algorithm: gcd(x, y) = gcd(y, x mod y), repeated until "
        "the remainder is 0. The last nonzero remainder is the gcd."
    ]
    x, y = big, small
    if a < b and not terse:
        steps.append(f"Since {a} < {b}, I start by dividing {b} by {a}.")
    while True:
        q, r = divmod(x, y)
        if r == 0:
            steps.append(f"{x} = {q} × {y} + 0. The remainder is 0, so the gcd is {y}.")
            break
        steps.append(f"{x} = {q} × {y} + {r}, so gcd({x}, {y}) = gcd({y}, {r}).")
        x, y = y, r
    assert y == g
    if not terse:
        if g == 1:
            steps.append(f"The last nonzero remainder is 1, so {a} and {b} are coprime.")
        else:
            steps.append(
                f"Check: {a} ÷ {g} = {a // g} and {b} ÷ {g} = {b // g}, both exact. Dividing every number in the "
                f"steps above by {g} gives the same quotients, ending at 1, so {a // g} and {b // g} share no factor "
                f"and {g} is the greatest common divisor."
            )
    solution = f"gcd({a}, {b}) = {g}"
    if not terse:
        solution = f"By the Euclidean algorithm, the last nonzero remainder is {g}:\n\n{solution}"
    return problem, steps, solution, str(g)


WORDS = ["banana", "parallel", "committee", "strawberry", "bookkeeper", "assessment", "successful", "mississippi"]


def make_counting(rng: random.Random, size: int, terse: bool) -> Trace:
    words = [w for w in WORDS if len(w) == size]
    if words and rng.random() < 0.5:
        text = rng.choice(words)
    else:
        text = "".join(rng.choice("aeiorstnl") for _ in range(size))
    letter = rng.choice(sorted(set(text)))
    positions = [i for i, ch in enumerate(text, start=1) if ch == letter]
    problem = rng.choice(
        [
            'How many times does the letter "{c}" appear in "{s}"?',
            'Count the occurrences of the letter "{c}" in the string "{s}".',
        ]
    ).format(c=letter, s=text)
    plural = "s" if len(positions) != 1 else ""
    if terse:
        steps = [
            f"'{letter}' is at position{plural} {_fmt_list(positions)} of \"{text}\", "
            f"so it appears {len(positions)} time{plural}."
        ]
        return problem, steps, f"{len(positions)} occurrence{plural}", str(len(positions))
    steps = [] if terse else [
        f"{rng.choice(OPENERS)} The string \"{text}\" has {len(text)} characters. I will scan it one character at "
        f"a time and keep a running count of '{letter}'."
    ]
    running = 0
    for i, ch in enumerate(text, start=1):
        if ch == letter:
            running += 1
            steps.append(f"Character {i} is '{ch}'. That matches, so the count goes from {running - 1} to {running}.")
        else:
            steps.append(f"Character {i} is '{ch}', not '{letter}'. The count stays {running}.")
    if not terse:
        steps.append(
            f"Let me double-check by listing the positions of '{letter}': {_fmt_list(positions)}. That is "
            f"{len(positions)} position{plural}, matching the count."
        )
    solution = (
        f"Scanning \"{text}\" character by character, '{letter}' appears at position{plural} {_fmt_list(positions)}."
    )
    return problem, steps, solution, str(len(positions))


# name -> (task, smallest size, largest size)
TASKS: dict[str, tuple[Callable[[random.Random, int, bool], Trace], int, int]] = {
    "addition": (make_addition, 2, 14),
    "multiplication": (make_multiplication, 0, len(MUL_SHAPES) - 1),
    "sorting": (make_sorting, 3, 24),
    "list_sum": (make_list_sum, 3, 48),
    "gcd": (make_gcd, 1, 24),
    "counting": (make_counting, 4, 56),
}


# ---- records ----------------------------------------------------------------------------------------


def render_assistant(steps: list[str], solution: str, answer: str) -> str:
    """The Sky-T1 response format: thought steps separated by blank lines, then a short boxed solution."""
    thought = "\n\n".join(steps)
    body = f"{solution}\n\n" if solution else ""
    return (
        f"<|begin_of_thought|>\n\n{thought}\n\n<|end_of_thought|>\n\n"
        f"<|begin_of_solution|>\n\n{body}The answer is $\\boxed{{{answer}}}$.\n\n<|end_of_solution|>"
    )


def approx_tokens(text: str) -> int:
    """A tokenizer-free length estimate (the tokenizer is trained on these very records, so it comes after).

    One per digit and per space before a digit (Qwen2's pre-tokenizer splits both off), per word, and per
    run of punctuation; close to the trained 1024-token BPE, whose merges are mostly whole words here.
    """
    return len(re.findall(r"\d| (?=\d)|[^\W\d_]+|[^\w\s]+", text))


def build_records(n: int, seed: int) -> list[dict]:
    """n Sky-T1 ShareGPT records; a pure function of (n, seed)."""
    rng = random.Random(seed)
    names = list(TASKS)
    records: list[dict] = []
    for i in range(n):
        name = rng.choice(names)
        make, lo, hi = TASKS[name]
        # Target length 10 + 110 * LogNormal(0, 1.1) tokens (median 120, p90 ~470, a tail to the cap), like
        # long-CoT data where most traces are short and a few are several times longer. Sizes are discrete
        # and step past the target, so the realised lengths run longer (median ~190; see the printed summary).
        target = 10 + 110 * rng.lognormvariate(0.0, 1.1)
        terse = target < TERSE_BELOW_TOKENS
        sub_seed = rng.getrandbits(64)
        # Grow the problem until its trace reaches the target; every size re-draws from the same sub-seed,
        # so the result depends only on (seed, i). A size whose problem + trace would pass the cap is not
        # taken, so a rendered sample (with the ~240-token system prompt) stays under ~1200 tokens.
        chosen: tuple[str, str] | None = None
        for size in range(lo, hi + 1):
            problem, steps, solution, answer = make(random.Random(sub_seed), size, terse)
            if terse:
                solution = ""  # an easy question gets just the boxed answer in its solution section
            assistant = render_assistant(steps, solution, answer)
            n_tokens = approx_tokens(assistant)
            if chosen is not None and n_tokens + approx_tokens(problem) > MAX_CONTENT_TOKENS:
                break
            chosen = (problem, assistant)
            if n_tokens >= target:
                break
        assert chosen is not None
        problem, assistant = chosen
        records.append(
            {
                "id": f"sky-t1-tiny-{i:04d}-{name}",
                "system": SKY_T1_SYSTEM_PROMPT,
                "conversations": [
                    {"from": "user", "value": problem},
                    {"from": "assistant", "value": assistant},
                ],
            }
        )
    return records


def to_messages(record: dict) -> list[dict[str, str]]:
    """ShareGPT (system + from/value turns) to chat-template messages (role/content)."""
    roles = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
    messages = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    messages += [{"role": roles[t["from"]], "content": t["value"]} for t in record["conversations"]]
    return messages


def write_jsonl(records: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)  # atomic: a reader never sees a half-written file


# ---- tokenizer --------------------------------------------------------------------------------------


def build_tokenizer(corpus: Iterable[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Byte-level BPE with Qwen2's normalizer, pre-tokenizer and decoder, trained on `corpus`.

    The specials are added after training so they take the last ids, as in Qwen2.5 (<|endoftext|> first).
    """
    tok = Tokenizer(
        BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    n_regular = vocab_size - len(SPECIAL_TOKENS)
    trainer = BpeTrainer(
        vocab_size=n_regular,
        min_frequency=2,
        show_progress=False,
        # All 256 byte symbols, so any UTF-8 text encodes (and round-trips) even if unseen in training.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    got = tok.get_vocab_size(with_added_tokens=False)
    if got != n_regular:
        raise RuntimeError(f"BPE reached {got} tokens, wanted {n_regular}: the training corpus is too small")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        unk_token=None,
        eos_token="<|im_end|>",  # Qwen2.5-Instruct: generation stops at the end of the assistant turn
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=32768,
        clean_up_tokenization_spaces=False,  # otherwise decode() rewrites " ." etc. and breaks round-trips
        add_prefix_space=False,
        errors="replace",
        split_special_tokens=False,
        chat_template=QWEN25_CHAT_TEMPLATE,
    )
    if len(hf) != vocab_size:
        raise RuntimeError(f"tokenizer has {len(hf)} tokens, wanted {vocab_size}")
    return hf


def tokenizer_corpus(records: list[dict]) -> list[str]:
    """Everything the tokenizer will see in practice, specials excluded (they are never merged)."""
    texts = [QWEN_DEFAULT_SYSTEM]
    for r in records:
        # The system prompt once per record, as the model sees it: BPE counts word frequencies, so this
        # is what earns its words whole-word tokens and keeps every rendered sample short.
        texts += [r["system"], "system\n", "user\n", "assistant\n"] + [t["value"] for t in r["conversations"]]
    return texts


def save_tokenizer(tok: PreTrainedTokenizerFast, out: Path) -> None:
    """save_pretrained into a fresh folder and swap it in, so no stale file from an older save lingers."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the shipped folder must be readable by all
    tok.save_pretrained(str(tmp))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


# ---- summary ----------------------------------------------------------------------------------------


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile, q in [0, 100]."""
    xs = sorted(values)
    return xs[min(len(xs) - 1, max(0, math.ceil(len(xs) * q / 100) - 1))]


def length_summary(records: list[dict], tok: PreTrainedTokenizerFast) -> dict[str, list[int]]:
    """Token counts per record: the assistant text alone, and the whole chat-rendered sample."""
    assistant = [r["conversations"][-1]["value"] for r in records]
    rendered = [tok.apply_chat_template(to_messages(r), tokenize=False) for r in records]
    return {
        "assistant": [len(x) for x in tok(assistant, add_special_tokens=False)["input_ids"]],
        "rendered": [len(x) for x in tok(rendered, add_special_tokens=False)["input_ids"]],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=400, help="number of records")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=EMBEDDED_DIR)
    args = p.parse_args(argv)
    if args.n < 20:
        p.error("--n must be at least 20: below that the records hold too few distinct words for 1021 BPE merges")

    records = build_records(args.n, args.seed)
    tok = build_tokenizer(tokenizer_corpus(records))
    data_path = args.out_dir / DATA_FILENAME
    write_jsonl(records, data_path)
    save_tokenizer(tok, args.out_dir / TOKENIZER_DIRNAME)

    tasks = Counter(r["id"].rsplit("-", 1)[1] for r in records)
    print(f"wrote {len(records)} records to {data_path} ({data_path.stat().st_size / 1e6:.2f} MB)")
    print("tasks: " + ", ".join(f"{k} {v}" for k, v in sorted(tasks.items())))
    for name, lens in length_summary(records, tok).items():
        print(
            f"{name} tokens: min {min(lens)} / median {percentile(lens, 50)} / p90 {percentile(lens, 90)} "
            f"/ max {max(lens)}"
        )
    print(f"tokenizer: {len(tok)} tokens -> {args.out_dir / TOKENIZER_DIRNAME}")


if __name__ == "__main__":
    main()
