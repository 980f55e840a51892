"""sky_data.dedup: exact, near and benchmark duplicates, checked against hand-built problem lists whose duplicates
are known, Jaccard similarities computed here from the shingle sets, and the real benchmark files of
../shared/data (those tests skip without them)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import SHARED, subprocess_env, write_jsonl

from sky_data.config import DedupCfg
from sky_data.dedup import (
    BENCHMARKS,
    DEFAULT_BENCHMARKS,
    decontaminate,
    dedup_exact,
    dedup_near,
    deduplicate,
    load_benchmarks,
    lsh_params,
    normalize_question,
)
from sky_data.schema import Problem

DATA = SHARED / "data"
needs_shared = pytest.mark.skipif(not (DATA / "math500" / "test.jsonl").is_file(),
                                  reason=f"needs the shared benchmark files under {DATA}")

# 60 words, no punctuation or LaTeX: its normalised words are its lowercased words
Q60 = ("A farmer has a rectangular field whose length is three times its width and he plans to fence the field and "
       "divide it into two equal parts with one fence parallel to the shorter side If the total length of fencing "
       "he buys is four hundred meters what is the area of each of the two parts in square meters")


def mk(question: str, source: str = "s", answer: str = "1") -> Problem:
    return Problem.make(domain="math", question=question, answer=answer, source=source)


def shingles(text: str, k: int = 5) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i:i + k]) for i in range(len(words) - k + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def replace_word(text: str, i: int, new: str) -> str:
    words = text.split()
    words[i] = new
    return " ".join(words)


def ids(problems: list[Problem]) -> list[str]:
    return [p.id for p in problems]


# ---------------------------------------------------------------- normalisation and exact duplicates


@pytest.mark.parametrize("a, b", [
    ("What is $x^{2}+1$ when $x = 3$?", "what  is x^2 + 1 when x=3"),
    ("What is $x^{2}+1$ when $x = 3$?", "WHAT IS \\(X^2+1\\) WHEN \\(X=3\\)."),
    (r"Compute $\dfrac{1}{2}\left(3\right)$.", r"compute \frac{1}{2} (3)"),
    (r"It costs \$5 and 50\% is off.", "it costs 5 and 50 % is off"),
    ("Janet\u2019s ducks lay 16 eggs.", "Janet's ducks lay 16 eggs"),
    (r"Find $\text{the area}$ in $\mathrm{cm}^2$.", "find the area in cm^2"),
    ("x\u2212y = 1,\n\n  find  y", "x-y=1 find y"),
])
def test_reformatted_copies_normalise_to_the_same_text(a, b):
    assert normalize_question(a) == normalize_question(b)


@pytest.mark.parametrize("a, b", [("x+y", "x-y"), ("2.5", "25"), ("f'(x)", "f(x)"), (r"\alpha b", r"\alphab"),
                                  ("what is 2+3", "what is 2+4")])
def test_different_questions_stay_different(a, b):
    assert normalize_question(a) != normalize_question(b)


def test_normalised_text_glues_formulas_into_words_and_is_a_fixed_point():
    s = normalize_question(r"Let $f(x) + f(y) = f(x+y)$ for all $x, y$; write it as $\frac{m}{n}$.")
    assert s.split() == ["let", "f(x)+f(y)=f(x+y)for", "all", "x", "y", "write", "it", "as", r"\frac", "m", "n"]
    assert normalize_question(s) == s


def test_exact_duplicates_keep_the_first_occurrence_in_input_order():
    qs = ["What is $x^{2}+1$ when $x = 3$?",  # 0
          "Find the sum of the digits of 2024.",  # 1
          "what  is x^2 + 1 when x=3",  # 2: copy of 0
          "What is $x^2-1$ when $x=3$?",  # 3: different (minus)
          "FIND THE SUM OF THE DIGITS OF 2024",  # 4: copy of 1
          "What is $X^2+1$ when $X=3$.",  # 5: copy of 0
          ]
    problems = [mk(q, source=f"src{i % 2}") for i, q in enumerate(qs)]
    kept, dropped = dedup_exact(problems)
    assert ids(kept) == ids([problems[0], problems[1], problems[3]])
    assert [(d.problem_id, d.match, d.reason, d.source) for d in dropped] == [
        (problems[2].id, problems[0].id, "duplicate", "src0"),
        (problems[4].id, problems[1].id, "duplicate", "src0"),
        (problems[5].id, problems[0].id, "duplicate", "src1")]
    assert dropped[0].detail == "same normalised question"


def test_a_copy_with_another_answer_is_dropped_and_says_so():
    kept, dropped = dedup_exact([mk("What is 6 times 7?", answer="42"), mk("what is 6 times 7", answer="41")])
    assert len(kept) == 1 and "answer '41' vs kept '42'" in dropped[0].detail


# ---------------------------------------------------------------- near duplicates


def test_the_60_word_question_is_60_words_with_distinct_shingles():
    assert len(Q60.split()) == 60 and len(shingles(Q60)) == 56
    assert normalize_question(Q60) == Q60.lower()


def test_one_word_changed_mid_question_is_below_0_9_and_kept():
    other = replace_word(Q60, 30, "eight")
    # the word is in 5 of the 56 shingles of each: 51 shared of 61
    assert jaccard(Q60, other) == pytest.approx(51 / 61) and 51 / 61 < 0.9 - 0.05
    kept, dropped = dedup_near([mk(Q60), mk(other)], threshold=0.9)
    assert len(kept) == 2 and dropped == []


def test_two_words_changed_is_far_below_and_kept():
    other = replace_word(replace_word(Q60, 15, "eight"), 45, "nine")
    assert jaccard(Q60, other) == pytest.approx(46 / 66)
    kept, dropped = dedup_near([mk(Q60), mk(other)])
    assert len(kept) == 2 and dropped == []


@pytest.mark.parametrize("make_other, true_j", [
    (lambda q: replace_word(q, 59, "feet"), 55 / 57),  # last word: in 1 shingle only
    (lambda q: q + " please", 56 / 57),  # one word appended
    (lambda q: "  " + q.upper() + " ", 1.0),  # a reformatted copy (same normalised text)
])
def test_a_copy_well_above_0_9_is_dropped_as_the_first_ones_near_duplicate(make_other, true_j):
    other = make_other(Q60)
    assert jaccard(Q60.lower(), other.lower()) == pytest.approx(true_j) and true_j > 0.9 + 0.05
    first, second = mk(Q60, source="a"), mk(other, source="b")
    kept, dropped = dedup_near([first, second], threshold=0.9)
    assert ids(kept) == [first.id]
    (d,) = dropped
    assert (d.problem_id, d.source, d.reason, d.match) == (second.id, "b", "near_duplicate", first.id)
    estimate = float(d.detail.removeprefix("jaccard~"))
    assert abs(estimate - true_j) < 0.06  # 128 permutations: standard error ~0.02 here


def test_many_near_copies_are_all_found_among_unrelated_questions():
    # 20 unrelated 80-word questions and a copy of each with its last word changed (true J = 75/77 = 0.97): the
    # LSH must offer every copy as a candidate (datasketch's default bands would miss ~1 in 5 at J = 0.95)
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(400)]
    bases = [" ".join(rng.choice(vocab) for _ in range(80)) for _ in range(20)]
    copies = [replace_word(b, 79, "zzz") for b in bases]
    assert all(jaccard(b, c) > 0.95 for b, c in zip(bases, copies))
    assert max(jaccard(a, b) for a in bases for b in bases if a != b) < 0.1
    problems = [mk(q) for q in bases] + [mk(q) for q in copies]
    kept, dropped = dedup_near(problems)
    assert ids(kept) == ids(problems[:20])
    assert [d.match for d in dropped] == ids(problems[:20])


def test_a_chain_is_compared_with_kept_problems_only():
    words = [f"w{i}" for i in range(32)]
    a, b, c = " ".join(words[0:24]), " ".join(words[4:28]), " ".join(words[8:32])
    assert jaccard(a, b) == jaccard(b, c) == pytest.approx(16 / 24) and jaccard(a, c) == pytest.approx(12 / 28)
    pa, pb, pc = mk(a), mk(b), mk(c)
    kept, dropped = dedup_near([pa, pb, pc], threshold=0.55)  # 0.67 is above it, 0.43 below
    assert ids(kept) == [pa.id, pc.id] and [(d.problem_id, d.match) for d in dropped] == [(pb.id, pa.id)]


def test_questions_shorter_than_a_shingle_fall_back_to_exact():
    ps = [mk("Compute 2+3."), mk("compute 2 + 3"), mk("Compute 2+4."), mk("Compute 2+3 now.")]
    kept, dropped = dedup_near(ps)
    assert ids(kept) == ids([ps[0], ps[2], ps[3]])
    assert [(d.problem_id, d.match, d.reason) for d in dropped] == [(ps[1].id, ps[0].id, "duplicate")]


def test_lsh_bands_find_a_pair_at_the_threshold_99_percent_of_the_time():
    for threshold, num_perm in [(0.9, 128), (0.8, 64), (0.5, 128), (1.0, 16)]:
        b, r = lsh_params(threshold, num_perm)
        assert b * r <= num_perm and 1 - (1 - threshold**r) ** b >= 0.99
        assert r == num_perm or 1 - (1 - threshold ** (r + 1)) ** (num_perm // (r + 1)) < 0.99  # the most rows
    assert lsh_params(0.9, 128) == (12, 10)


# ---------------------------------------------------------------- decontamination (hand-built benchmarks)

LONG = "Find the number of ordered pairs of positive integers whose product equals twice their sum"
BENCH = {"toy": [("long", LONG), ("short", r"Simplify $\sqrt{242}$.")]}


@pytest.mark.parametrize("question, dropped_as", [
    ("How many are there? A number of ordered pairs of positive integers is what we want.", None),  # 7 words
    ("How many are there? Find the number of ordered pairs of positive integers, please.", "toy:long"),  # 8
    ("Please SIMPLIFY \\sqrt{242} and explain.", "toy:short"),  # a short question, contained whole
    ("Simplify \\sqrt{2420}.", None),
    ("Simplify the \\sqrt{242}.", None),  # not contiguous
    ("An unrelated question about triangles.", None),
])
def test_a_problem_is_dropped_when_it_shares_an_8_gram_or_a_whole_short_question(question, dropped_as):
    p = mk(question, source="x")
    kept, dropped = decontaminate([p], BENCH, ngram=8)
    if dropped_as is None:
        assert ids(kept) == [p.id] and dropped == []
    else:
        assert kept == [] and [(d.problem_id, d.source, d.reason, d.match) for d in dropped] == [
            (p.id, "x", "contaminated", dropped_as)]


def test_the_detail_is_the_shared_n_gram():
    _, (d,) = decontaminate([mk("Okay: find the number of ordered pairs of positive integers now")], BENCH)
    assert d.detail == "find the number of ordered pairs of positive"  # the problem's first 8 words in common


def test_n_grams_two_benchmark_questions_share_are_template_text_with_skip_shared():
    tail = "$\\frac{m}{n}$ where $m$ and $n$ are relatively prime positive integers. Find $m+n$."
    bench = {"b": [("1", "The probability is " + tail), ("2", "The area of the pentagon is " + tail)]}
    template_only = mk("A coin is flipped until two heads appear; the expected count equals " + tail)
    copy = mk("THE PROBABILITY IS " + tail)  # shares n-grams of its own with question 1 too
    # a shared n-gram counts for the first question that has it
    assert [d.match for d in decontaminate([template_only, copy], bench)[1]] == ["b:1", "b:1"]
    kept, dropped = decontaminate([template_only, copy], bench, skip_shared=True)
    assert ids(kept) == [template_only.id] and [d.match for d in dropped] == ["b:1"]


# ---------------------------------------------------------------- benchmark files


def test_benchmarks_cover_every_sky_eval_task():
    from sky_eval.tasks import TASKS

    assert set(BENCHMARKS) == set(TASKS)


def test_a_malformed_benchmark_file_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "math500" / "test.jsonl"
    path.parent.mkdir()
    path.write_text('{"problem": "ok", "unique_id": "a"}\n\n{"problem": "ok\n', encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}:3: not valid JSON"):
        load_benchmarks(tmp_path)
    path.write_text('{"problem": "ok", "unique_id": "a"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}:2: expected a JSON object"):
        load_benchmarks(tmp_path, ["math500"])
    path.write_text('{"problem": "ok", "unique_id": "a"}\n{"question": "wrong field"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}:2: math500 needs a non-empty string in 'problem'"):
        load_benchmarks(tmp_path, ["math500"])
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmarks(tmp_path, ["math5000"])
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_benchmarks(tmp_path / "nope")


def test_benchmark_ids_follow_each_task(tmp_path):
    def put(name: str, records: list[dict]) -> None:
        (tmp_path / name).mkdir()
        write_jsonl(tmp_path / name / "test.jsonl", records)

    put("math500", [{"problem": "p", "unique_id": "test/algebra/1.json"}])
    put("aime25", [{"problem": "p", "id": "I-1"}])
    put("gsm8k", [{"question": "q0", "idx": 7}, {"question": "q1", "idx": 8}])
    put("humaneval", [{"prompt": "def f():", "task_id": "HumanEval/0"}])
    put("apps", [{"question": "q", "problem_id": 4000}])
    put("taco", [{"question": "q"}, {"question": "q"}])
    put("gpqa_diamond", [{"Question": "q", "Record ID": "rec1"}])
    put("olympiadbench", [{"question": "q", "context": "c", "id": 1606}, {"question": "q2", "context": None, "id": 2}])
    loaded, missing = load_benchmarks(tmp_path)
    assert loaded == {"math500": [("test/algebra/1.json", "p")], "aime25": [("I-1", "p")],
                      "olympiadbench": [("1606", "c\nq"), ("2", "q2")], "gsm8k": [("0", "q0"), ("1", "q1")],
                      "gpqa_diamond": [("rec1", "q")], "apps": [("4000", "q")], "taco": [("0", "q"), ("1", "q")],
                      "humaneval": [("HumanEval/0", "def f():")]}
    assert missing == ["aime24", "amc23", "livecodebench"]
    # the toy recipe's sums: checked only when named, by their "a+b" ids
    put("toy_addition", [{"problem": "What is 12 + 30?", "id": "12+30", "answer": "42"}])
    assert "toy_addition" not in load_benchmarks(tmp_path)[0]
    assert load_benchmarks(tmp_path, ["toy_addition"]) == ({"toy_addition": [("12+30", "What is 12 + 30?")]}, [])


# ---------------------------------------------------------------- against the real benchmark files

GSM8K_REPHRASED = ("Every day, 16 eggs come from the ducks Janet keeps. Three go into her breakfast and four are baked "
                   "into muffins for friends; each remaining egg sells for $2 at the market. Her daily income?")
UNRELATED = "A snail climbs 3 feet up a 10-foot well each day and slips back 2 feet each night; when does it escape?"


@needs_shared
def test_copies_of_real_benchmark_questions_are_dropped_and_rephrased_ones_kept():
    bench, missing = load_benchmarks(DATA)
    math, aime = bench["math500"][:5], bench["aime24"][:5]
    # the brief's case: a prefix and the case changed; the others reformatted in other ways
    problems = [mk("Solve: " + math[0][1].upper(), source="t")]
    problems += [mk(q.replace("$", "  ") + " Show your work.", source="t") for _, q in math[1:]]
    problems += [mk("Problem: " + q.lower().replace(".", " ."), source="t") for _, q in aime]
    problems += [mk(GSM8K_REPHRASED, source="t"), mk(UNRELATED, source="t")]
    kept, dropped = decontaminate(problems, bench)
    assert ids(kept) == ids(problems[10:])
    assert [d.match for d in dropped] == [f"math500:{i}" for i, _ in math] + [f"aime24:{i}" for i, _ in aime]
    assert math[0][0] == "test/precalculus/807.json"  # the first record's unique_id, read as the id
    # the rephrased GSM8K question (an independent check on the raw words) shares no 8 words in a row
    raw = lambda s: s.lower().replace(",", " ").replace(".", " ").replace("?", " ").replace(";", " ").split()  # noqa: E731
    gsm = next(q for pid, q in bench["gsm8k"] if pid == "0")
    assert not {tuple(raw(gsm)[i:i + 8]) for i in range(len(raw(gsm)))} & {
        tuple(raw(GSM8K_REPHRASED)[i:i + 8]) for i in range(len(raw(GSM8K_REPHRASED)))}


@needs_shared
def test_the_report_lists_the_benchmarks_checked_and_missing():
    result = deduplicate([mk(UNRELATED)], DedupCfg(benchmarks_dir=str(DATA)), progress=False)
    files = {n: DATA / n / "test.jsonl" for n in BENCHMARKS}
    on_disk = {n: sum(1 for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
               for n, f in files.items() if f.is_file()}
    assert result.report["benchmarks_checked"] == on_disk
    assert {"math500", "aime24", "gsm8k"} <= set(on_disk)
    # ../shared/data ships none of these (sizes, licences): they are reported, not an error
    assert result.report["benchmarks_missing"] == ["gpqa_diamond", "livecodebench", "apps", "taco"]
    assert len(result.kept) == 1


# ---------------------------------------------------------------- the stage


def stage_inputs(tmp_path: Path) -> tuple[list[Problem], DedupCfg]:
    (tmp_path / "math500").mkdir(exist_ok=True)
    write_jsonl(tmp_path / "math500" / "test.jsonl", [{"problem": LONG, "unique_id": "test/x/1.json"}])
    problems = [mk(Q60, source="a"),  # 0 kept
                mk("What is $x^{2}+1$ when $x = 3$?", source="a"),  # 1 kept
                mk("what is x^2 + 1 when x=3", source="b"),  # 2 duplicate of 1
                mk(Q60 + " please", source="b"),  # 3 near duplicate of 0
                mk("Show that " + LONG + " is finite.", source="b"),  # 4 contaminated
                mk("Compute 2+3.", source="a")]  # 5 kept
    return problems, DedupCfg(benchmarks_dir=str(tmp_path))


def test_deduplicate_runs_exact_then_near_then_decontaminate_and_reports_it(tmp_path):
    problems, cfg = stage_inputs(tmp_path)
    result = deduplicate(problems, cfg, progress=False)
    assert ids(result.kept) == ids([problems[0], problems[1], problems[5]])
    assert [(d.problem_id, d.reason, d.match) for d in result.dropped] == [
        (problems[2].id, "duplicate", problems[1].id), (problems[3].id, "near_duplicate", problems[0].id),
        (problems[4].id, "contaminated", "math500:test/x/1.json")]
    r = result.report
    assert (r["input"], r["kept"]) == (6, 3)
    assert r["dropped"] == {"duplicate": 1, "near_duplicate": 1, "contaminated": 1}
    assert r["dropped_by_source"] == {"b": {"duplicate": 1, "near_duplicate": 1, "contaminated": 1}}
    assert r["kept_by_source"] == {"a": 3}
    assert r["contaminated_by_benchmark"] == {"math500": 1}
    assert r["benchmarks_checked"] == {"math500": 1}
    assert "math500" not in r["benchmarks_missing"] and "gsm8k" in r["benchmarks_missing"]
    assert r["settings"] == asdict(cfg) and r["lsh_bands_rows"] == [12, 10]
    json.dumps(r)  # the pipeline writes it as it is


def test_each_pass_is_switched_by_its_config_key(tmp_path):
    problems, cfg = stage_inputs(tmp_path)
    cfg.exact = False  # the reformatted copy is still caught, by the near pass (same normalised words)
    assert [(d.reason, d.detail) for d in deduplicate(problems, cfg, progress=False).dropped][0] == (
        "near_duplicate", "jaccard~1.00")
    cfg.exact, cfg.near, cfg.decontaminate = True, False, False
    result = deduplicate(problems, cfg, progress=False)
    assert [d.reason for d in result.dropped] == ["duplicate"]
    assert result.report["benchmarks_checked"] == {} and result.report["benchmarks_missing"] == []
    cfg.decontaminate, cfg.benchmarks_dir = True, None  # nothing to check against: every benchmark is missing
    assert deduplicate(problems, cfg, progress=False).report["benchmarks_missing"] == list(DEFAULT_BENCHMARKS)
    cfg.benchmarks_dir, cfg.benchmarks = str(tmp_path), ["gsm8k"]  # only the benchmarks named
    result = deduplicate(problems, cfg, progress=False)
    assert result.report["benchmarks_missing"] == ["gsm8k"] and result.report["dropped"]["contaminated"] == 0


def test_empty_input(tmp_path):
    _, cfg = stage_inputs(tmp_path)
    result = deduplicate([], cfg, progress=False)
    assert result.kept == [] and result.dropped == []
    assert result.report["input"] == 0 and result.report["dropped"] == {
        "duplicate": 0, "near_duplicate": 0, "contaminated": 0}
    assert dedup_exact([]) == dedup_near([]) == decontaminate([], {}) == ([], [])


DETERMINISM_SCRIPT = """
import json, sys
from sky_data.config import DedupCfg
from sky_data.dedup import deduplicate
from sky_data.schema import Problem
problems = [Problem.from_dict(d) for d in json.load(open(sys.argv[1]))]
result = deduplicate(problems, DedupCfg(benchmarks_dir=sys.argv[2]), progress=False)
print(json.dumps([[p.id for p in result.kept], [vars(d) for d in result.dropped]]))
"""


def test_the_same_input_gives_the_same_output_in_any_process(tmp_path):
    problems, cfg = stage_inputs(tmp_path)
    rng = random.Random(1)
    problems += [mk(" ".join(rng.choice(["a", "b", "c", "d", "e", "f"]) for _ in range(12))) for _ in range(40)]
    first = deduplicate(problems, cfg, progress=False)
    again = deduplicate(problems, cfg, progress=False)
    assert (ids(first.kept), first.dropped, first.report) == (ids(again.kept), again.dropped, again.report)
    (tmp_path / "problems.json").write_text(json.dumps([p.to_dict() for p in problems]), encoding="utf-8")
    # another str hash seed: the n-gram index hashes with hash(), so only its lookups may differ, not the result
    out = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT, str(tmp_path / "problems.json"), str(tmp_path)],
                         env=subprocess_env(PYTHONHASHSEED="12345"), capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [ids(first.kept), [vars(d) for d in first.dropped]]
