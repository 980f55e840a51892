"""The math verifier: pull the final answer out of a response and decide whether it equals the reference.

Rejection sampling keeps only the traces this accepts and every math benchmark number is its verdict, so it
errs towards "not equal". Three steps, each a plain function:

1. `extract_answer` takes the last `\\boxed{...}` / `\\fbox{...}` (braces matched, `\\boxed 5` too) of the
   `<|begin_of_solution|> ... <|end_of_solution|>` section when there is one, else of the whole text; then
   an answer phrase ("The final answer is ...", "Answer: ...", "#### N"). It never guesses the last number
   unless asked (`last_number_fallback=True`): the original Sky-T1 checker did, and so scored truncated
   outputs by whatever number they stopped on. `extract_choice` does the same for A-D questions and never
   takes a stray capital letter from the text.
2. `_normalize` rewrites both answers with the conventions below (plain regexes, no sympy).
3. math-verify decides what is left: `verify(gold, pred)` in that order (it is asymmetric), each side
   parsed alone as `$...$`, never a whole response (its parser falls back to the last number).

Conventions, and why:
- Percent is a unit: `50\\%` equals `50`; `0.5` does NOT equal `50\\%`. The reference is never scaled by 100
  (the original checker accepted 100 for 1). Likewise degrees (`90^\\circ` = 90), dollars and `\\text{}` units.
- Decimals are values as written, compared to 12 places: `0.34` = `\\frac{17}{50}`, but `0.333333` is not
  1/3 and `0.0000673` is not `.0000672` (math-verify alone rounds to 6 places and accepts both).
- Order: the reference's form decides. A bare list `1, 2` and a tuple `(1, 2)` are ordered (the original
  checker sorted lists); only a set written `\\{1, 2\\}` (or `1 \\pm \\sqrt{2}`) is compared without order.
  The price: all roots of an equation listed in another order than the reference's are marked wrong.
- An equation whose left side is a bare variable is its value: `x = 5` equals `5` (math-verify's rule).
- Thousands separators (`32,\\!348`, `2,125`) are dropped only where the whole answer is one such number;
  `1,2` stays a list. Mixed numbers `1\\frac{4}{5}` mean 9/5, repeating decimals `0.\\overline{3}` mean 1/3.
- A reference written as text (`\\text{Evelyn}`, `\\text{(C)}`) is compared as text: case, spaces, braces
  and punctuation ignored.

Every comparison is time-bounded from any thread. math-verify's own timeout is `signal.alarm`, which works
only on the main thread and cannot interrupt a long C-level computation anyway (`9^{9^{9^{9}}}` makes sympy
build a 370-million-digit integer). So the sympy work runs in a small pool of worker processes: each is a
plain `python -c` child (no multiprocessing, so a caller's unguarded `__main__` is never re-imported) that
reads one JSON job per line on stdin and answers on stdout. The calling thread borrows an idle worker,
waits up to `timeout_s` for its answer and, past that, kills it (a fresh one starts on the next demand).
A worker costs ~0.5 s to start, once; a comparison costs ~1-10 ms, so 500 answers score in seconds.
POSIX only (`select` on pipes).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["MathVerdict", "check_math", "extract_answer", "extract_choice", "math_equal"]

FLOAT_PLACES = 12  # decimals agree to this many places (math-verify's default, 6, equates 6.73e-5 and 6.72e-5)
WORKER_MEMORY_BYTES = 4 << 30  # address-space cap of a worker: a runaway expression dies, not the host
MAX_WORKERS = min(8, os.cpu_count() or 1)

SOLUTION_BEGIN, SOLUTION_END = "<|begin_of_solution|>", "<|end_of_solution|>"


@dataclass(frozen=True)
class MathVerdict:
    correct: bool
    extracted: str | None  # the answer taken from the response, before normalisation
    reason: str  # "equivalent", "not equivalent", "no answer", "timeout" or "error: ..."


def math_equal(response: str, gold: str, timeout_s: float = 5.0) -> bool:
    """True when the final answer of `response` equals the reference answer `gold`."""
    return check_math(response, gold, timeout_s).correct


def check_math(response: str, gold: str | float, timeout_s: float = 5.0) -> MathVerdict:
    """Extract the answer of `response`, compare it with `gold`, and say why. Safe from any thread.

    `gold` is a bare reference answer (`\\frac{1}{2}`, `023`, `27.0`); a reference containing `\\boxed{}` is
    reduced to its box first. The sympy comparison is abandoned after `timeout_s` seconds (reason "timeout").
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    gold = str(gold)
    if "\\boxed" in gold or "\\fbox" in gold:
        gold = extract_answer(gold) or gold
    gold_n = _normalize(gold)
    if not gold_n:
        raise ValueError(f"empty reference answer: {gold!r}")
    extracted = extract_answer(response)
    if extracted is None:
        return MathVerdict(False, None, "no answer")
    pred_n = _normalize(extracted)

    if _squash(gold_n) == _squash(pred_n):
        return MathVerdict(True, extracted, "equivalent")
    gold_text = _text_key(gold_n, strict=True)
    if gold_text is not None:  # a worded reference: compare words, sympy would read "even" as e*v*e*n
        same = gold_text == _text_key(pred_n, strict=False)
        return MathVerdict(same, extracted, "equivalent" if same else "not equivalent")
    try:
        same = _pool().compare(gold_n, pred_n, timeout_s)
    except TimeoutError:
        return MathVerdict(False, extracted, "timeout")
    except _WorkerError as err:
        return MathVerdict(False, extracted, f"error: {err}")
    return MathVerdict(same, extracted, "equivalent" if same else "not equivalent")


# ---------------------------------------------------------------------------------------------------------
# Extraction


def extract_answer(response: str, last_number_fallback: bool = False) -> str | None:
    """The final answer of a response as written (LaTeX, without `$`), or None when it gives none.

    Looks at the solution section first, then the whole text; in each, the last box wins (boxes that follow
    each other separated only by commas or "and" are one list answer), then the last answer phrase. A last box
    that never closes (a truncated output) gives None. `last_number_fallback` adds the last number of the
    text as a final resort: off by default because a truncated output ends on some intermediate number.
    """
    regions = _regions(response)
    for region in regions:
        found, box = _last_box(region)
        if found:
            return box
        phrase = _last_phrase(region)
        if phrase is not None:
            return phrase
    if last_number_fallback:
        for region in regions:
            numbers = _NUMBER.findall(region)
            if numbers:
                return numbers[-1]
    return None


def extract_choice(response: str, choices: str = "ABCD") -> str | None:
    """The letter of a multiple-choice answer: from the last box (`\\boxed{C}`, `\\boxed{\\text{(C)}}`), else
    from the last answer phrase ("the answer is (C)", "Answer: C", "**Answer:** C"); else None. A capital
    letter that is not announced as the answer ("I think B is wrong") never counts.
    """
    letters = "".join(re.escape(c) for c in choices)
    in_box = re.compile(rf"\(?([{letters}])\)?(?:[.:]?(?:\s.*)?)?", re.DOTALL)
    phrase = re.compile(
        rf"(?i:answer)(?:\s+is)?[\s*:]*(?:(?i:option|choice)\s+)?(?:\$|\\\()?\s*(?:\\text(?:bf)?\{{)?"
        rf"\(?([{letters}])\)?(?![A-Za-z0-9])"
    )
    for region in _regions(response):
        found, box = _last_box(region)
        if found and box is not None:
            inner = _strip_text_wrappers(box).strip()
            m = in_box.fullmatch(inner)
            if m:
                return m.group(1)
        matches = phrase.findall(region)
        if matches:
            return matches[-1]
    return None


def _regions(response: str) -> list[str]:
    """Where to look, in order: the solution section (when the response has one), then the whole text."""
    start = response.rfind(SOLUTION_BEGIN)
    if start < 0:
        return [response]
    section = response[start + len(SOLUTION_BEGIN) :]
    end = section.find(SOLUTION_END)
    return [section if end < 0 else section[:end], response]


_BOX_START = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BOX_JOINER = re.compile(r"\s*\$?\s*(?:,|;|,?\s*\\text\{\s*and\s*\}|,?\s*and)\s*\$?\s*")  # not "or": a hedge


def _last_box(text: str) -> tuple[bool, str | None]:
    """(found, content) of the last top-level box. found is False when the text has no box at all; content is
    None when that last box is unusable (never closed, or empty). Braces are matched, `\\{`/`\\}` skipped."""
    boxes: list[tuple[int, int, str | None]] = []  # (start, end, content)
    pos = 0
    while True:
        m = _BOX_START.search(text, pos)
        if m is None:
            break
        i = m.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "{":
            end = _match_brace(text, i)
            if end < 0:  # truncated: everything after is inside this box
                boxes.append((m.start(), len(text), None))
                break
            content = text[i + 1 : end].strip()
            boxes.append((m.start(), end + 1, content or None))
            pos = end + 1
        else:  # `\boxed 5`: one token
            tok = re.match(r"[^\s$]+", text[i:])
            if tok is None:
                boxes.append((m.start(), len(text), None))
                pos = m.end()
                continue
            content = tok.group(0).rstrip(".,;:")
            boxes.append((m.start(), i + tok.end(), content or None))
            pos = i + tok.end()
    if not boxes:
        return False, None
    start, _, content = boxes[-1]
    if content is None:
        return True, None
    parts = [content]
    for prev_start, prev_end, prev in reversed(boxes[:-1]):  # "\boxed{1}, \boxed{-2}" is the list "1, -2"
        gap = text[prev_end:start]
        if prev is None or len(gap) > 30 or not _BOX_JOINER.fullmatch(gap):
            break
        parts.insert(0, prev)
        start = prev_start
    if len(parts) == 1 and _BOX_START.match(content):  # \boxed{\boxed{5}}
        inner_found, inner = _last_box(content)
        return True, inner if inner_found else content
    return True, ", ".join(parts)


def _match_brace(text: str, open_at: int) -> int:
    """Index of the `}` closing the `{` at open_at, or -1. A backslash escapes the next character."""
    depth, i = 0, open_at
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


_PHRASE = re.compile(
    r"(?:(?i:final\s+answer|the\s+answer)\s*(?:is|=|:)"  # "The final answer is", "the answer is:"
    r"|^[ \t]*(?:\*\*|#+[ \t]*)?(?i:final\s+answer|answer)[ \t]*(?:\*\*)?[ \t]*:"  # "**Answer:**" opening a line
    r"|^[ \t]*####)"  # GSM8K
    r"[\s*:]*([^\n]*)",
    re.MULTILINE,
)
_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\[(.+?)\\\]|\\\((.+?)\\\)", re.DOTALL)
_SPAN_JOINER = re.compile(r"\s*(?:,\s*and|,|;|and)\s*")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def _last_phrase(text: str) -> str | None:
    """The answer announced by the last answer phrase of the text: its first math span when only a few words
    come before one ("is therefore $5$"), else the rest of the sentence."""
    for m in reversed(list(_PHRASE.finditer(text))):
        rest = m.group(1).strip()
        if _PHRASE.search(rest):  # "Final Answer: The final answer is $5$. I hope it is correct."
            return _last_phrase(rest)
        span = _MATH_SPAN.search(rest)
        if span and re.fullmatch(r"[A-Za-z ,:*]{0,30}", rest[: span.start()]):
            parts = [next(g for g in span.groups() if g is not None)]
            while True:  # "$69$, $84$" and "$1$ and $2$" are one list answer
                joiner = _SPAN_JOINER.match(rest, span.end())
                nxt = _MATH_SPAN.match(rest, joiner.end()) if joiner else None
                if nxt is None:
                    break
                parts.append(next(g for g in nxt.groups() if g is not None))
                span = nxt
            answer = ", ".join(parts)
        else:
            answer = re.split(r"\.(?:\s|$)|\s+I hope\b", rest, maxsplit=1)[0]
        answer = answer.strip().strip("*").strip().rstrip(".,;").strip()
        if answer:
            return answer
    return None


# ---------------------------------------------------------------------------------------------------------
# Normalisation (strings only: cheap, run in the caller's thread)

_DELIMITED = re.compile(r"\$+(.*?)\$+|\\\[(.*)\\\]|\\\((.*)\\\)", re.DOTALL)
# a unit is \text{...} right after a value: "10\text{ inches}", "15\mbox{ cm}^2", "\frac{270}7\text{ degrees}"
_UNIT_TEXT = re.compile(r"([\d}).])\s*\\(?:text|mbox)\{\s*[A-Za-z][A-Za-z .]*\}(?:\s*\^\s*\{?[23]\}?)?")
_UNIT_MATHRM = re.compile(r"([\d}).])\s*\\mathrm\{\s*[A-Za-z]{2,}[A-Za-z .]*\}(?:\s*\^\s*\{?[23]\}?)?")
_UNIT_WORDS = re.compile(r"^([-+]?[\d.,]*\d)\s+[A-Za-z]{3,}(?:\s+[A-Za-z]+)*(?:\s*\^\s*\{?[23]\}?)?\.?$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_REPEATING = re.compile(r"(?<![\d.])(\d*)\.(\d*)\\overline\s*\{(\d+)\}")
_MIXED = re.compile(r"(?<![^\s(\[,=+\-{])(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}(?=$|[\s,;)\]}])")


def _normalize(answer: str) -> str:
    """Rewrite an answer so that notation differences vanish (see the module docstring); LaTeX out."""
    s = answer.strip()
    for _ in range(2):  # surrounding math delimiters, possibly doubled
        m = _DELIMITED.fullmatch(s)
        if m:
            s = next(g for g in m.groups() if g is not None).strip()
    s = s.replace("\n", " ").replace("\\displaystyle", "")
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\(?:left|right)\s*\.", "", s)
    s = re.sub(r"\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])", "", s)
    s = s.replace("\\lbrace", "\\{").replace("\\rbrace", "\\}")
    s = re.sub(r"\\(?:textbf|textrm|textnormal|textit|textup)\{", r"\\text{", s)
    # thousands separators written as spacing: 32,\!348  10{,}000  10\,000
    s = re.sub(r",\s*\\!\s*", "", s)
    s = re.sub(r"(?<=\d)\{,\}(?=\d{3})", "", s)
    s = re.sub(r"(?<=\d)\\,(?=\d{3}(?!\d))", "", s)
    s = re.sub(r"(?<!\\)\\[,;:! ]|\\q?quad(?![A-Za-z])|~", " ", s)
    # currency, percent, degrees: labels, not values
    s = re.sub(r"\\\$|\$", "", s)
    s = re.sub(r"\\text\{\s*\\?%\s*\}|\\?%|\\text\{\s*percent\s*\}|\s*\bpercent\b", "", s)
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree(?![A-Za-z])", "", s)
    # list words: "1 and 2", "1 \text{ or } 2"
    s = re.sub(r"\s*,?\s*\\text\{\s*(?:and|or)\s*\}\s*", ", ", s)
    s = re.sub(r"\s*,?\s+(?:and|or)\s+", ", ", s)
    s = _UNIT_MATHRM.sub(r"\1", _UNIT_TEXT.sub(r"\1", s))
    s = _UNIT_WORDS.sub(r"\1", s.strip())
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)  # \frac43, \frac 59
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)  # \frac9{19}
    s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*(\d)", r"\\frac{\1}{\2}", s)  # \frac{270}7
    s = re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", s)
    s = _REPEATING.sub(_repeating_to_frac, s)
    s = _MIXED.sub(lambda m: f"\\frac{{{int(m[1]) * int(m[3]) + int(m[2])}}}{{{m[3]}}}", s)
    s = re.sub(r"\s+", " ", s).strip().rstrip(".").strip()
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s


def _repeating_to_frac(m: re.Match) -> str:
    whole, fixed, rep = m[1] or "0", m[2], m[3]
    value = int(whole) + Fraction(int(fixed or 0), 10 ** len(fixed))
    value += Fraction(int(rep), (10 ** len(rep) - 1) * 10 ** len(fixed))
    return f"\\frac{{{value.numerator}}}{{{value.denominator}}}"


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _strip_text_wrappers(s: str) -> str:
    prev = None
    while prev != s:
        prev = s
        s = re.sub(r"\\(?:text|mathrm|mbox|textbf|mathbf)\{([^{}]*)\}", r"\1", s)
    return s


def _text_key(s: str, strict: bool) -> str | None:
    """The words of a text answer, lowercased, without spaces, braces or punctuation. strict: only for an
    answer that is entirely `\\text{...}` holding letters and no digits (None otherwise)."""
    if strict and not re.fullmatch(r"\\text\{[^{}\\\d]*[A-Za-z][^{}\\\d]*\}", s):
        return None
    return re.sub(r"[^a-z0-9]", "", _strip_text_wrappers(s).lower())


# ---------------------------------------------------------------------------------------------------------
# Equivalence (sympy through math-verify; runs inside a worker process)


def _equivalent(gold: str, pred: str) -> bool:
    """Normalised gold vs normalised prediction. A bare list in the gold is compared item by item, in order;
    everything else (tuples, intervals, sets, matrices, equations) goes to math-verify whole."""
    gold_items, pred_items = _split_top(gold), _split_top(pred)
    if len(gold_items) > 1:
        if len(pred_items) == 1 and pred.startswith("\\{") and pred.endswith("\\}"):
            pred_items = _split_top(pred[2:-2])
        return len(gold_items) == len(pred_items) and all(
            _mv_equal(g, p) for g, p in zip(gold_items, pred_items)
        )
    if len(pred_items) > 1 and not gold.startswith("\\{") and not re.search(r"\\pm|\\mp", gold):
        return False  # a list for a single answer, e.g. hedging "5, 6" (or "5, 5", which math-verify sets to {5})
    return _mv_equal(gold, pred)


def _split_top(s: str) -> list[str]:
    """Split on commas and semicolons outside any bracket: "1, (2,3)" -> ["1", "(2,3)"]."""
    items, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if s.startswith("\\{", i) or s.startswith("\\}", i):
                depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c in ",;" and depth == 0:
            items.append(s[start:i].strip())
            start = i + 1
        i += 1
    items.append(s[start:].strip())
    return [item for item in items if item]


def _mv_equal(gold: str, pred: str) -> bool:
    from math_verify import parse, verify
    from math_verify.parser import LatexExtractionConfig

    # LaTeX extraction only: the plain-expression extractor would fall back to any number in the string.
    config = [LatexExtractionConfig()]
    g = parse(f"${gold}$", extraction_config=config, parsing_timeout=None)
    p = parse(f"${pred}$", extraction_config=config, parsing_timeout=None)
    if not g or not p:
        return False
    return verify(g, p, float_rounding=FLOAT_PLACES, timeout_seconds=None)


def _serve() -> None:
    """Worker loop: one JSON job per stdin line ({"gold", "pred"}) -> one JSON reply per stdout line."""
    import logging

    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the reply channel
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # we bound time ourselves; no "timeout disabled"
    import math_verify  # noqa: F401  (pay the import before saying ready)

    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        job = json.loads(line)
        try:
            reply = {"equal": bool(_equivalent(job["gold"], job["pred"]))}
        except Exception as err:  # noqa: BLE001  (a verdict of False with the reason, never a dead worker)
            reply = {"error": f"{type(err).__name__}: {err}"[:200]}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


# ---------------------------------------------------------------------------------------------------------
# Worker processes


class _WorkerError(RuntimeError):
    pass


_WORKER_CODE = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('sky_verify_math_worker', sys.argv[1]); "
    "mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; "
    "spec.loader.exec_module(mod); mod._serve()"
)


class _Worker:
    """One child process running `_serve`, loaded from this file's path so the worker never imports the
    caller's `__main__` nor the rest of the package."""

    def __init__(self, start_timeout_s: float = 120.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._buf = b""
        try:
            if self._read_line(time.monotonic() + start_timeout_s) != "ready":
                raise _WorkerError("worker did not start")
        except TimeoutError:
            self.kill()
            raise _WorkerError(f"worker did not start in {start_timeout_s:.0f} s") from None
        except BaseException:
            self.kill()
            raise

    def ask(self, job: dict, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
        except (BrokenPipeError, OSError) as err:
            raise _WorkerError(f"worker died ({err})") from err
        return json.loads(self._read_line(deadline))

    def _read_line(self, deadline: float) -> str:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise _WorkerError(f"worker died (exit code {self.proc.poll()})")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


class _Pool:
    """Up to `size` workers, started on demand; a thread borrows an idle one for one comparison."""

    def __init__(self, size: int) -> None:
        self.pid = os.getpid()
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()

    def compare(self, gold: str, pred: str, timeout_s: float) -> bool:
        with self._slots:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                worker = _Worker()
                with self._lock:
                    self._all.add(worker)
            try:
                reply = worker.ask({"gold": gold, "pred": pred}, timeout_s)
            except BaseException:  # timeout, dead worker, KeyboardInterrupt: this worker is done for
                with self._lock:
                    self._all.discard(worker)
                worker.kill()
                raise
            with self._lock:
                self._idle.append(worker)
        if "error" in reply:
            raise _WorkerError(reply["error"])
        return reply["equal"]

    def close(self) -> None:
        if os.getpid() != self.pid:  # a forked child must not kill its parent's workers
            return
        with self._lock:
            workers, self._all, self._idle = list(self._all), set(), []
        for worker in workers:
            worker.kill()


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _Pool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():  # after a fork, the parent's pipes are not ours
            _POOL = _Pool(MAX_WORKERS)
            atexit.register(_POOL.close)
        return _POOL
