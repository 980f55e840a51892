"""Deduplicate and decontaminate problems: one problem per distinct question, and none that overlaps a benchmark.

    from sky_data.dedup import deduplicate
    result = deduplicate(problems, cfg.dedup)  # exact -> near -> decontaminate, as cfg.dedup says
    result.kept, result.dropped, result.report

The original Sky-T1 data shipped 815 duplicate questions, and a training problem that is a benchmark problem
inflates that benchmark's score. Three passes, each a pure function over `Problem`s that keeps input order and
lets the first occurrence win:

1. `dedup_exact`: equal `normalize_question` text (so `$x^2$`, `x^{2}` and `X ^ 2` are one question).
2. `dedup_near`: MinHash (datasketch) over word shingles of the normalised question, candidates from an LSH
   index of the problems kept so far, dropped when the estimated Jaccard similarity to one of them is at or
   above the threshold. Jaccard of 5-word shingle sets is harsh on one changed word: a question of N words
   has N-4 shingles and the word is in 5 of them, so J = (N-9)/(N+1) (60 words: 51/61 = 0.84, under 0.9); the
   first or last word changed: J = (N-5)/(N-3) (0.96). A math problem with one number changed is a different
   problem, which is why the threshold is high.
3. `decontaminate`: drop a problem that shares any word n-gram (`ngram` words; the pipeline's default is 13,
   see `DedupCfg`) with a benchmark question from `DIR/<task>/test.jsonl` (the layout of ../shared/data and of
   sky_eval's `data_dir`); `skip_shared` leaves out n-grams that two benchmark questions share (stock wording).

"Words" are the space-separated words of `normalize_question`: prose words, LaTeX command names, and formulas
glued together (`x^2+1=y` is one word, `\\frac{m}{n}` is `\\frac m n`, three). sky_data never imports sky_eval;
a test checks that `BENCHMARKS` names every sky_eval task.
"""

from __future__ import annotations

import json
import re
import unicodedata
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sky_data.config import DedupCfg
from sky_data.schema import Problem

__all__ = ["BENCHMARKS", "BENCHMARK_IDS", "DEFAULT_BENCHMARKS", "DedupResult", "Dropped", "decontaminate",
           "dedup_exact", "dedup_near", "deduplicate", "lsh_params", "load_benchmarks", "normalize_question"]

REASONS = ("duplicate", "near_duplicate", "contaminated")

# benchmark -> the field(s) of its test.jsonl records that the model is asked (joined by "\n" when several are
# set): the same text sky_eval builds its prompt from
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "math500": ("problem",),
    "aime24": ("problem",),
    "aime25": ("problem",),
    "amc23": ("problem",),
    "olympiadbench": ("context", "question"),  # context is null in all 675; sky_eval prepends it when set
    "gsm8k": ("question",),
    "gpqa_diamond": ("Question",),
    "livecodebench": ("question_content",),
    "apps": ("question",),
    "taco": ("question",),
    "humaneval": ("prompt",),
    "toy_addition": ("problem",),  # the toy recipe's held-out sums (sky_data.toy)
}
# What an empty `dedup.benchmarks` checks: every benchmark but the toy recipe's own sums, which are checked only when
# named (a real data run has no such file and would report it missing at every run).
DEFAULT_BENCHMARKS: tuple[str, ...] = tuple(b for b in BENCHMARKS if b != "toy_addition")
# benchmark -> the id field(s), first one present wins; none present: the record's 0-based index in the file.
# The ids are sky_eval's, so a reported match can be looked up there.
_OTHER_IDS = ("question_id", "problem_id", "id")
BENCHMARK_IDS: dict[str, tuple[str, ...]] = {
    "math500": ("unique_id",),
    "aime24": ("id",),
    "aime25": ("id",),
    "amc23": ("id",),
    "olympiadbench": ("id",),
    "gsm8k": (),  # the hub rows carry no id (the `idx` some copies add is ignored, as sky_eval does)
    "gpqa_diamond": ("Record ID", *_OTHER_IDS),
    "livecodebench": _OTHER_IDS,
    "apps": _OTHER_IDS,
    "taco": _OTHER_IDS,
    "humaneval": ("task_id",),
    "toy_addition": ("id",),
}


@dataclass
class Dropped:
    problem_id: str
    source: str
    reason: str  # "duplicate" | "near_duplicate" | "contaminated"
    match: str  # the kept problem's id it duplicates, or "<benchmark>:<benchmark problem id>"
    detail: str  # "same normalised question", "jaccard~0.94", or the shared n-gram (first 80 chars)


@dataclass
class DedupResult:
    kept: list[Problem]  # input order preserved
    dropped: list[Dropped]  # in the order the passes dropped them
    report: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------
# Normalisation

_CHARS = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                        "\u2212": "-", "\u2013": "-", "\u2014": "-"})
_LINE_BREAK = re.compile(r"\\\\")
_ESCAPED = re.compile(r"\\([$%&#_{}])")
_MATH_DELIMITERS = re.compile(r"\$|\\[()\[\]]")
_LAYOUT = re.compile(r"\\(?:left|right|bigg?[lr]?|displaystyle|textstyle|quad|qquad|text|textbf|textit|textrm"
                     r"|mathrm|mbox|emph)(?![a-z])|\\[,;:! ]|~")
_FRAC = re.compile(r"\\[dt](frac|binom)(?![a-z])")
_DROPPED = re.compile(r"[{}.,;:!?\"`]")
_WORD = re.compile(r"\\[a-z]+|[^\W_]+")
_TOKEN = re.compile(r"\\[a-z]+|[^\W_]+|\S")


def normalize_question(text: str) -> str:
    """The question as a canonical string of words, so reformatted copies compare equal.

    In order: NFKC; curly quotes to straight ones, the Unicode minus and dashes to `-`; lowercase; LaTeX line
    breaks `\\\\` removed; escaped specials `\\$ \\% \\& \\# \\_ \\{ \\}` become the character; math delimiters
    `$`, `\\(`, `\\)`, `\\[`, `\\]` removed; layout that does not change meaning removed (`\\left`, `\\right`,
    `\\big`-family sizes, `\\displaystyle`, `\\textstyle`, `\\quad`, `\\qquad`, `\\,` `\\;` `\\:` `\\!` `\\ `, `~`,
    and the names of `\\text`, `\\textbf`, `\\textit`, `\\textrm`, `\\mathrm`, `\\mbox`, `\\emph`, keeping their
    argument); `\\dfrac`/`\\tfrac` become `\\frac`, `\\dbinom`/`\\tbinom` `\\binom`; braces, sentence punctuation
    `. , ; : ! ?` and the quotes `" \\`` removed (so `x^{2}` = `x^2`, and `2.5` is `2 5`). What is left is cut into
    tokens: word tokens (runs of letters and digits, LaTeX command names) and every other character alone
    (`+ - = ( ) ^ _ ' / < >` ... are kept: `x+y` and `x-y` stay different questions). The original spacing is
    dropped: one space goes between two word tokens, none next to a symbol, so `x + y` = `x+y`, a formula is one
    word (`f(x)+f(y)=f(x+y)`) and `\\frac{m}{n}` is three (`\\frac m n`). Tokenising the result again gives the
    same tokens (a backslash that starts no command is dropped), so the spacing merges nothing distinct.
    """
    s = unicodedata.normalize("NFKC", text).translate(_CHARS).lower()
    s = _LINE_BREAK.sub(" ", s)
    s = _ESCAPED.sub(r"\1", s)
    s = _MATH_DELIMITERS.sub(" ", s)
    s = _LAYOUT.sub(" ", s)
    s = _FRAC.sub(r"\\\1", s)
    s = _DROPPED.sub(" ", s)
    out: list[str] = []
    word_before = False
    for token in _TOKEN.findall(s):
        if token == "\\":  # a backslash that starts no command: glued to a following word it would make one
            continue
        word = _WORD.fullmatch(token) is not None
        if word and word_before:
            out.append(" ")
        out.append(token)
        word_before = word
    return "".join(out)


# ---------------------------------------------------------------------------------------------------------
# Exact and near duplicates


def dedup_exact(problems: Iterable[Problem], progress: bool = False) -> tuple[list[Problem], list[Dropped]]:
    """One problem per normalised question; the first occurrence wins."""
    kept: list[Problem] = []
    dropped: list[Dropped] = []
    first: dict[str, Problem] = {}
    for p in tqdm(problems, desc="dedup exact", disable=not progress):
        key = normalize_question(p.question)
        if key in first:
            dropped.append(Dropped(p.id, p.source, "duplicate", first[key].id, _same_question(first[key], p)))
        else:
            first[key] = p
            kept.append(p)
    return kept, dropped


def _same_question(kept: Problem, p: Problem) -> str:
    # a conflicting label is worth seeing in the audit: the first one's is the one trained on
    if p.domain != "code" and p.answer != kept.answer:
        return f"same normalised question; answer {str(p.answer)[:30]!r} vs kept {str(kept.answer)[:30]!r}"
    return "same normalised question"


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) of the LSH index: the most rows per band (fewest spurious candidates) such that a pair at
    exactly `threshold` is a candidate with probability >= 0.99, i.e. 1 - (1 - t^r)^b >= 0.99 with
    b = num_perm // r. datasketch's own choice (0.9, 128 -> 5 bands of 25 rows) finds a pair at J = 0.95 only
    80% of the time (and at J = 0.9, 31%); this one (12 bands of 10 rows) misses 1 in 50,000 at 0.95.
    Candidates are then checked against the estimated Jaccard, so a spurious one costs one comparison, a missed
    one a duplicate."""
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if 1 - (1 - threshold**r) ** b >= 0.99:
            best = (b, r)
    return best


def dedup_near(problems: Sequence[Problem], threshold: float = 0.9, num_perm: int = 128, shingle: int = 5,
               seed: int = 1, progress: bool = False) -> tuple[list[Problem], list[Dropped]]:
    """Drop a problem whose estimated Jaccard similarity (MinHash over the set of `shingle`-word shingles of the
    normalised question) to a problem kept before it is >= `threshold`; the first occurrence wins. It is
    compared with the kept problems only, so a chain A ~ B ~ C with A and C apart keeps A and C. Questions of
    fewer than `shingle` words have no shingle: they are dropped only as exact copies of an earlier one."""
    from datasketch import MinHash, MinHashLSH

    bands, rows = lsh_params(threshold, num_perm)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=(bands, rows))
    template = MinHash(num_perm=num_perm, seed=seed)  # permutations drawn once, shared by every MinHash
    signatures: list[tuple[str, np.ndarray]] = []  # (id, MinHash values) of the kept, by LSH key
    kept: list[Problem] = []
    dropped: list[Dropped] = []
    short: dict[str, Problem] = {}
    for p in tqdm(problems, desc="dedup near", disable=not progress):
        words = normalize_question(p.question).split()
        if len(words) < shingle:
            key = " ".join(words)
            if key in short:
                dropped.append(Dropped(p.id, p.source, "duplicate", short[key].id,
                                       f"same normalised question (under {shingle} words)"))
            else:
                short[key] = p
                kept.append(p)
            continue
        m = MinHash(num_perm=num_perm, seed=seed, permutations=template.permutations, scheme=template.scheme)
        m.update_batch({" ".join(words[i:i + shingle]).encode() for i in range(len(words) - shingle + 1)})
        best, best_j = -1, -1.0
        for c in lsh.query(m):  # keys come back in no set order: the best match wins, ties to the earliest
            j = float(np.count_nonzero(signatures[c][1] == m.hashvalues)) / num_perm
            if j > best_j or (j == best_j and c < best):
                best, best_j = c, j
        if best_j >= threshold:
            dropped.append(Dropped(p.id, p.source, "near_duplicate", signatures[best][0],
                                   f"jaccard~{best_j:.2f}"))
            continue
        lsh.insert(len(signatures), m, check_duplication=False)
        signatures.append((p.id, m.hashvalues))
        kept.append(p)
    return kept, dropped


# ---------------------------------------------------------------------------------------------------------
# Benchmarks and decontamination


def load_benchmarks(benchmarks_dir: str | Path, names: Sequence[str] | None = None
                    ) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """Read `benchmarks_dir/<name>/test.jsonl` for each name (all of `DEFAULT_BENCHMARKS` when none are given).

    Returns name -> [(problem id, question text)] in file order, and the names that have no file there (not an
    error: the report lists them). A missing directory, an unknown name, a line that is not a JSON object, or a
    record with no question text is an error naming what to fix (`file:line` for a record).
    """
    root = Path(benchmarks_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"benchmarks_dir {root} is not a directory (it holds <benchmark>/test.jsonl)")
    names = list(names) if names else list(DEFAULT_BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    loaded: dict[str, list[tuple[str, str]]] = {}
    missing: list[str] = []
    for name in names:
        path = root / name / "test.jsonl"
        if not path.is_file():
            missing.append(name)
            continue
        loaded[name] = [_benchmark_question(name, rec, index, where)
                        for index, (where, rec) in enumerate(_jsonl_records(path))]
    return loaded, missing


def _jsonl_records(path: Path) -> Iterable[tuple[str, dict]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield f"{path}:{lineno}", rec


def _benchmark_question(name: str, rec: dict, index: int, where: str) -> tuple[str, str]:
    fields = BENCHMARKS[name]
    parts = [rec[k] for k in fields if rec.get(k) is not None]
    if not parts or not all(isinstance(t, str) for t in parts) or not "".join(parts).strip():
        raise ValueError(f"{where}: {name} needs a non-empty string in {' or '.join(map(repr, fields))}")
    id_field = next((k for k in BENCHMARK_IDS[name] if rec.get(k) is not None), None)
    return (str(rec[id_field]).strip() if id_field else str(index)), "\n".join(parts)


def decontaminate(problems: Sequence[Problem], benchmarks: dict[str, list[tuple[str, str]]], ngram: int = 8,
                  skip_shared: bool = False, progress: bool = False) -> tuple[list[Problem], list[Dropped]]:
    """Drop a problem whose normalised question shares a word `ngram`-gram with a benchmark question's; a
    benchmark question of fewer words is matched whole (the problem contains it as a contiguous word sequence).

    The benchmark side is hashed once into a sorted array (16 bytes an n-gram: apps/taco-sized sets fit), each
    problem's n-grams are looked up in it, and a hit is confirmed on the text, so a hash collision cannot drop a
    problem. `match` names the benchmark question the problem shares the most n-grams with (an n-gram of several
    benchmark questions counts for the first, in `benchmarks` order; ties go to the first too), and `detail` the
    problem's first n-gram shared with it.

    `skip_shared=True` leaves out of the index the n-grams that two or more benchmark questions share: they are
    template text ("\\frac m n where m and n are relatively prime positive integers": 21 questions of
    ../shared/data), not any one problem's content; at n = 8 they make 8 to 17 questions of each math benchmark
    there look like copies of another benchmark's. Every question there keeps n-grams of its own, so none
    becomes undetectable.
    """
    owners: list[tuple[str, str, str]] = []  # (benchmark, id, " normalised question ")
    hashes = array("q")  # of each question's distinct n-grams, in owner order (8 bytes an item, not an int's 32)
    owner_of = array("q")
    short: list[int] = []  # the questions of fewer than `ngram` words, matched whole
    for name, questions in benchmarks.items():
        for pid, text in questions:
            words = normalize_question(text).split()
            if not words:
                continue  # nothing to match: an empty sequence would be "in" every problem
            if len(words) < ngram:
                short.append(len(owners))
            else:
                grams = {hash(" ".join(words[i:i + ngram])) for i in range(len(words) - ngram + 1)}
                hashes.extend(grams)
                owner_of.extend(repeat(len(owners), len(grams)))
            owners.append((name, pid, f" {' '.join(words)} "))
    keys, first, count = np.unique(np.frombuffer(hashes, dtype=np.int64), return_index=True, return_counts=True)
    owner = np.frombuffer(owner_of, dtype=np.int64)[first]  # the first question that has the n-gram
    if skip_shared:  # a question's n-grams are a set, so a count above 1 is two questions
        keys, owner = keys[count == 1], owner[count == 1]
        repeated = Counter(owners[o][2] for o in short)
        short = [o for o in short if repeated[owners[o][2]] == 1]
    kept: list[Problem] = []
    dropped: list[Dropped] = []
    for p in tqdm(problems, desc="decontaminate", disable=not progress):
        hit = _benchmark_match(normalize_question(p.question).split(), ngram, keys, owner, short, owners)
        if hit is None:
            kept.append(p)
        else:
            (name, pid, _), gram = hit
            dropped.append(Dropped(p.id, p.source, "contaminated", f"{name}:{pid}", gram[:80]))
    return kept, dropped


def _benchmark_match(words: list[str], n: int, keys: np.ndarray, owner: np.ndarray, short: list[int],
                     owners: list[tuple[str, str, str]]) -> tuple[tuple[str, str, str], str] | None:
    hits: Counter[int] = Counter()
    first_gram: dict[int, str] = {}
    if len(keys) and len(words) >= n:
        grams = [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        h = np.fromiter((hash(g) for g in grams), dtype=np.int64, count=len(grams))
        pos = np.minimum(np.searchsorted(keys, h), len(keys) - 1)
        for i in np.flatnonzero(keys[pos] == h):
            o = int(owner[pos[i]])
            if f" {grams[i]} " in owners[o][2]:  # a collision of 64-bit hashes would fail here
                hits[o] += 1
                first_gram.setdefault(o, grams[i])
    if short:  # few (43 in ../shared/data): a substring test each is cheaper than an index per length
        text = f" {' '.join(words)} "
        for o in short:
            if owners[o][2] in text:
                hits[o] += 1
                first_gram.setdefault(o, owners[o][2].strip())
    if not hits:
        return None
    best = min(hits, key=lambda o: (-hits[o], o))
    return owners[best], first_gram[best]


# ---------------------------------------------------------------------------------------------------------
# The stage


def deduplicate(problems: Sequence[Problem], cfg: DedupCfg, progress: bool = True) -> DedupResult:
    """Exact duplicates, then near duplicates, then benchmark overlap, each as `cfg` enables it.

    `report`: input/kept counts, dropped counts by reason and by source, contaminated counts by benchmark, the
    benchmarks checked (name -> questions) and missing (no file in `cfg.benchmarks_dir`; every requested one
    when it is null), the LSH (bands, rows), and the settings.
    """
    kept = list(problems)
    dropped: list[Dropped] = []
    if cfg.exact:
        kept, out = dedup_exact(kept, progress=progress)
        dropped += out
    if cfg.near:
        kept, out = dedup_near(kept, threshold=cfg.near_threshold, num_perm=cfg.num_perm, shingle=cfg.shingle,
                               progress=progress)
        dropped += out
    checked: dict[str, int] = {}
    missing: list[str] = []
    if cfg.decontaminate:
        if cfg.benchmarks_dir is None:
            missing = list(cfg.benchmarks or DEFAULT_BENCHMARKS)
        else:
            benchmarks, missing = load_benchmarks(cfg.benchmarks_dir, cfg.benchmarks)
            checked = {name: len(qs) for name, qs in benchmarks.items()}
            kept, out = decontaminate(kept, benchmarks, ngram=cfg.ngram, skip_shared=cfg.skip_shared,
                                      progress=progress)
            dropped += out
    by_source: dict[str, Counter] = defaultdict(Counter)
    for d in dropped:
        by_source[d.source][d.reason] += 1
    report = {
        "input": len(problems),
        "kept": len(kept),
        "dropped": {reason: sum(d.reason == reason for d in dropped) for reason in REASONS},
        "dropped_by_source": {src: dict(c) for src, c in sorted(by_source.items())},
        "kept_by_source": dict(sorted(Counter(p.source for p in kept).items())),
        "contaminated_by_benchmark": dict(Counter(d.match.split(":", 1)[0] for d in dropped
                                                  if d.reason == "contaminated")),
        # on a real run, the n-grams that drop the most problems show template text worth `skip_shared`
        "contaminated_top_ngrams": Counter(d.detail for d in dropped if d.reason == "contaminated").most_common(10),
        "benchmarks_checked": checked,
        "benchmarks_missing": missing,
        "lsh_bands_rows": list(lsh_params(cfg.near_threshold, cfg.num_perm)) if cfg.near else None,
        "settings": asdict(cfg),
    }
    return DedupResult(kept=kept, dropped=dropped, report=report)
