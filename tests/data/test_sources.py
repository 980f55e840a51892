"""sky_data.sources: every source read into `Problem`s, checked against problems written out by hand.

Hub sources are loaded from local directories and files laid out like their hub repositories (parquet under
data/, per-config folders with a README, raw JSONL, `save_to_disk` saves). Careless and hostile records must
each become a `Rejected` naming their exact line or row, never stop the run; unreadable files, empty sources
and sources with nothing usable are errors naming the file. The real MATH-500 file in ../shared/data is loaded
as a local source when present.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
from conftest import SHARED, write_jsonl

from sky_data.config import SourceCfg
from sky_data.schema import Problem
from sky_data.sources import Loaded, Rejected, load_source

MATH500 = SHARED / "data" / "math500" / "test.jsonl"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """`datasets` caches what it builds from local directories here, never in the user's cache; no network."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf_cache"


def hand_id(domain: str, question: str, answer: str | None = None, tests: dict | None = None,
            starter_code: str = "") -> str:
    """The content id as schema.py defines it: sha256 of the sorted-key JSON of these five fields, 16 hex."""
    content = json.dumps({"answer": answer, "domain": domain, "question": question, "starter_code": starter_code,
                          "tests": tests}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def load(quiet: bool = True, **cfg) -> Loaded:
    seed = cfg.pop("seed", 0)
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        return load_source(SourceCfg(**cfg), seed=seed, progress=False)


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))  # from_pylist would take the first row's keys only
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in rows]), path)
    return path


# ---------------------------------------------------------------------------------------------------- local


ADD_TESTS = {"fn_name": "add", "inputs": [[1, 2], [5, 5]], "outputs": [3, 10]}
LOCAL_RECORDS = [
    {"problem": "What is 3^3?", "answer": 27.0},
    {"id": 7, "question": "AIME-style: what is 20+3?", "answer": "023", "difficulty": 5, "solution": "20+3=23"},
    {"id": "c1", "problem": "Add two numbers.", "input_output": json.dumps(ADD_TESTS),
     "starter_code": "def add(a, b):\n    "},
    {"problem": "Print twice N.", "input_output": {"inputs": ["3\n"], "outputs": ["6\n"]}, "difficulty": "easy"},
    {"problem": "Speed of light in m/s, to 1 s.f.?", "answer": 3e8, "domain": "science"},
]


def expected_local(name: str) -> list[Problem]:
    src = f"local:{name}"
    return [
        Problem(id=hashlib.sha256(b'{"answer": "27", "domain": "math", "question": "What is 3^3?", '
                                  b'"starter_code": "", "tests": null}').hexdigest()[:16],
                domain="math", question="What is 3^3?", source=src, answer="27"),
        Problem(id=hand_id("math", "AIME-style: what is 20+3?", "023"), domain="math",
                question="AIME-style: what is 20+3?", source=src, answer="023", difficulty=5, source_id="7",
                meta={"solution": "20+3=23"}),
        Problem(id=hand_id("code", "Add two numbers.", None, ADD_TESTS, "def add(a, b):\n    "), domain="code",
                question="Add two numbers.", source=src, tests=ADD_TESTS, starter_code="def add(a, b):\n    ",
                source_id="c1"),
        Problem(id=hand_id("code", "Print twice N.", None, {"inputs": ["3\n"], "outputs": ["6\n"]}), domain="code",
                question="Print twice N.", source=src, tests={"inputs": ["3\n"], "outputs": ["6\n"]},
                difficulty="easy"),
        Problem(id=hand_id("science", "Speed of light in m/s, to 1 s.f.?", "300000000"), domain="science",
                question="Speed of light in m/s, to 1 s.f.?", source=src, answer="300000000"),
    ]


def test_local_jsonl_json_and_parquet_give_the_hand_written_problems(tmp_path):
    jsonl = write_jsonl(tmp_path / "mine.jsonl", LOCAL_RECORDS)
    as_list = tmp_path / "mine.json"
    as_list.write_text(json.dumps(LOCAL_RECORDS), encoding="utf-8")
    # parquet needs one type per column: input_output as JSON strings, answers as strings
    flat = [{**r, "input_output": json.dumps(r["input_output"]) if isinstance(r.get("input_output"), dict)
             else r.get("input_output")} for r in LOCAL_RECORDS]
    flat = [{**r, "answer": {27.0: "27", 3e8: "300000000"}.get(r.get("answer"), r.get("answer")),
             "id": None if r.get("id") is None else str(r["id"]),
             "difficulty": None if r.get("difficulty") is None else str(r["difficulty"])} for r in flat]
    parquet = write_parquet(tmp_path / "mine.parquet", flat)

    for path in (jsonl, as_list):
        loaded = load(path=str(path))
        assert loaded.problems == expected_local(path.name)
        assert loaded.rejected == []
    from_parquet = load(path=str(parquet)).problems
    assert [(p.id, p.source) for p in from_parquet] == [(e.id, "local:mine.parquet")
                                                       for e in expected_local("mine.parquet")]
    assert load(path=str(jsonl)).counts() == {"local:mine.jsonl": {"problems": 5, "rejected": 0}}


def test_local_domain_default_comes_from_the_config_and_json_lines_under_a_json_name_are_read(tmp_path):
    path = write_jsonl(tmp_path / "lines.json", [{"problem": "Why is the sky blue?", "answer": "Rayleigh"},
                                                 {"problem": "1+1?", "answer": "2", "domain": "math"}])
    sky, two = load(path=str(path), domain="science").problems
    assert (sky.domain, sky.id) == ("science", hand_id("science", "Why is the sky blue?", "Rayleigh"))
    assert (two.domain, two.id) == ("math", hand_id("math", "1+1?", "2"))


def test_a_bom_and_crlf_line_ends_are_read(tmp_path):
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"problem": "1+1?", "answer": "2"}\r\n\r\n'
                     b'{"problem": "2+2?", "answer": 4}\r\n')
    loaded = load(path=str(path))
    assert [(p.question, p.answer) for p in loaded.problems] == [("1+1?", "2"), ("2+2?", "4")]
    as_list = tmp_path / "windows.json"
    as_list.write_bytes(b'\xef\xbb\xbf[{"problem": "1+1?",\r\n "answer": "2"}]\r\n')
    assert [p.answer for p in load(path=str(as_list)).problems] == ["2"]


def test_each_malformed_record_is_rejected_at_its_exact_line_and_the_good_ones_load(tmp_path):
    path = tmp_path / "careless.jsonl"
    lines = [
        json.dumps({"problem": "ok 1", "answer": "1"}),  # 1
        json.dumps([1, 2]),  # 2: not an object
        '{"problem": "oops", ',  # 3: not JSON
        "",  # 4: blank, skipped
        json.dumps({"answer": "3"}),  # 5: no problem
        json.dumps({"problem": 5, "answer": "5"}),  # 6: a number for a string
        json.dumps({"problem": "io", "input_output": "{inputs: oops"}),  # 7: input_output not JSON
        json.dumps({"problem": "io", "input_output": {"inputs": ["1"], "outputs": []}}),  # 8: lengths differ
        json.dumps({"problem": "io", "input_output": "[" * 100_000 + "]" * 100_000}),  # 9: nested past the stack
        "[" * 100_000 + "]" * 100_000,  # 10: a whole line nested past the stack
        json.dumps({"problem": "b", "answer": True}),  # 11: a boolean answer
        json.dumps({"problem": "d", "answer": "1", "domain": "poetry"}),  # 12: unknown domain
        json.dumps({"problem": "   ", "answer": "1"}),  # 13: blank problem
        json.dumps({"problem": "c", "domain": "code"}),  # 14: code without tests
        json.dumps({"problem": "f", "input_output": {"inputs": [1], "outputs": [1], "fn_name": 3}}),  # 15
        json.dumps({"problem": "n", "answer": float("nan")}),  # 16: NaN answer (Python's json writes NaN)
        json.dumps({"problem": "io", "input_output": ""}),  # 17: no tests
        json.dumps({"problem": "id", "answer": "1", "id": [1]}),  # 18: a list for an id
        json.dumps({"problem": "ok 2", "input_output": {"inputs": ["1\n"], "outputs": ["1\n"]}}),  # 19
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"problem": "\xff\xfe", "answer": "1"}\n')  # 20: bad UTF-8
    with pytest.warns(UserWarning, match=r"rejected 17 of 19 records; first: .*careless.jsonl:2: expected an object"):
        loaded = load_source(SourceCfg(path=str(path)), progress=False)
    assert [p.question for p in loaded.problems] == ["ok 1", "ok 2"]
    where = {int(r.where.rsplit(":", 1)[1]): r.reason for r in loaded.rejected}
    assert all(r.where.startswith(f"{path}:") and r.source == "local:careless.jsonl" for r in loaded.rejected)
    assert sorted(where) == [2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20]
    assert where[2] == "expected an object, got list"
    assert where[3].startswith("not valid JSON")
    assert where[5] == "field 'problem' (or 'question') is missing"
    assert where[6].startswith("field 'problem' must be a string, got int")
    assert where[7].startswith("input_output is not valid JSON")
    assert where[8] == "input_output has 1 inputs but 0 outputs"
    assert where[9] == "input_output is nested too deeply"
    assert where[10] == "not valid JSON (nested too deeply)"
    assert where[11].startswith("field 'answer' must be a string or an integer or a number, got bool")
    assert where[12].startswith("field 'domain' must be one of math, code, science, got 'poetry'")
    assert where[13] == "field 'problem' is empty"
    assert where[14] == "a code problem needs field 'input_output' (its tests)"
    assert where[15].startswith("input_output: fn_name must be a non-empty string, got int")
    assert where[16] == "field 'answer' is nan"
    assert where[17].startswith("no tests")
    assert where[18].startswith("field 'id' must be a string or an integer, got list")
    assert where[20] == "not valid UTF-8"
    assert loaded.counts() == {"local:careless.jsonl": {"problems": 2, "rejected": 17}}


def test_rejections_in_a_json_list_and_a_parquet_file_name_the_row(tmp_path):
    as_list = tmp_path / "rows.json"
    as_list.write_text(json.dumps([{"problem": "a", "answer": "1"}, "text", {"problem": "b"}]), encoding="utf-8")
    loaded = load(path=str(as_list))
    assert [(r.where, r.reason) for r in loaded.rejected] == [(f"{as_list} row 1", "expected an object, got str"),
                                                             (f"{as_list} row 2", "field 'answer' is missing")]
    parquet = write_parquet(tmp_path / "rows.parquet", [{"problem": "a", "answer": "1"}, {"problem": None,
                                                                                         "answer": "2"}])
    assert [r.where for r in load(path=str(parquet)).rejected] == [f"{parquet} row 1"]


def test_unreadable_empty_and_all_bad_files_are_errors_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file: .*missing.jsonl"):
        load(path=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match=f"{tmp_path} is a directory"):
        load(path=str(tmp_path))
    for name, content in [("empty.jsonl", b""), ("blank.jsonl", b"\n  \n"), ("empty_list.json", b"[]")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}: no records"):
            load(path=str(tmp_path / name))
    (tmp_path / "broken.json").write_text('[{"problem": "a"', encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        load(path=str(tmp_path / "broken.json"))
    (tmp_path / "empty.json").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.json: not valid JSON"):
        load(path=str(tmp_path / "empty.json"))
    (tmp_path / "object.json").write_text('{"problem": "a", "answer": "1"}', encoding="utf-8")
    with pytest.raises(ValueError, match="object.json: expected a JSON list of records, got dict"):
        load(path=str(tmp_path / "object.json"))
    (tmp_path / "fake.parquet").write_text("not parquet at all", encoding="utf-8")
    with pytest.raises(ValueError, match="fake.parquet: not a parquet file"):
        load(path=str(tmp_path / "fake.parquet"))
    (tmp_path / "table.csv").write_text("problem,answer\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"table.csv: unknown file type '.csv'"):
        load(path=str(tmp_path / "table.csv"))
    (tmp_path / "csv.jsonl").write_text("problem,answer\n1+1?,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"csv.jsonl: every record was rejected \(2\); first: .*csv.jsonl:1: not"):
        load(path=str(tmp_path / "csv.jsonl"))
    write_jsonl(tmp_path / "no_answers.jsonl", [{"problem": "a"}, {"problem": "b"}])
    with pytest.raises(ValueError, match=r"every record was rejected \(2\).*no_answers.jsonl:2: field 'answer'"):
        load(path=str(tmp_path / "no_answers.jsonl"))


def test_bad_settings_fail_before_anything_is_read(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"problem": "a", "answer": "1"}])
    with pytest.raises(ValueError, match="source must be one of"):
        load(name="nope")
    with pytest.raises(ValueError, match="source local needs path"):
        load()
    with pytest.raises(ValueError, match="source local has no subsets"):
        load(path=str(path), subsets=["x"])
    with pytest.raises(ValueError, match="source.limit must be a non-negative integer"):
        load(path=str(path), limit=-1)
    with pytest.raises(ValueError, match="source.take must be a non-negative integer"):
        load(path=str(path), take=True)
    with pytest.raises(ValueError, match="domain must be one of"):
        load(path=str(path), domain="poetry")


def test_duplicates_are_kept_in_order(tmp_path):
    path = write_jsonl(tmp_path / "dups.jsonl", [{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "2"},
                                                 {"problem": "a", "answer": "1", "id": "again"}])
    problems = load(path=str(path)).problems
    assert [p.question for p in problems] == ["a", "b", "a"]
    assert problems[0].id == problems[2].id == hand_id("math", "a", "1") and problems[2].source_id == "again"


# ------------------------------------------------------------------------------------------ limit and take


def numbered(tmp_path: Path, n: int, bad_every: int = 0) -> Path:
    recs = [{"problem": f"q{i}", "answer": str(i)} if not bad_every or i % bad_every else {"problem": f"q{i}"}
            for i in range(n)]
    return write_jsonl(tmp_path / "numbered.jsonl", recs)


def test_limit_keeps_the_first_usable_problems_and_stops_reading(tmp_path):
    path = numbered(tmp_path, 20, bad_every=3)  # q0, q3, q6, ... have no answer
    loaded = load(path=str(path), limit=4)
    assert [p.question for p in loaded.problems] == ["q1", "q2", "q4", "q5"]
    assert [r.where for r in loaded.rejected] == [f"{path}:1", f"{path}:4"]  # nothing past the 4th usable one
    assert load(path=str(path), limit=0).problems == []


def test_take_draws_reproducibly_in_source_order(tmp_path):
    path = numbered(tmp_path, 50)
    draws = {seed: [p.question for p in load(path=str(path), take=10, seed=seed).problems] for seed in (0, 1)}
    assert draws[0] == [p.question for p in load(path=str(path), take=10, seed=0).problems]
    assert draws[0] != draws[1]
    assert all(len(d) == 10 and len(set(d)) == 10 for d in draws.values())
    assert draws[0] == sorted(draws[0], key=lambda q: int(q[1:]))  # source order
    assert [p.question for p in load(path=str(path), limit=20, take=5, seed=3).problems] == \
        [f"q{i}" for i in sorted(__import__("random").Random(3).sample(range(20), 5))]
    with pytest.warns(UserWarning, match="take=80 but only 50 problems; keeping all"):
        assert len(load_source(SourceCfg(path=str(path), take=80), progress=False).problems) == 50


# ---------------------------------------------------------------------------------------------------- mix


def test_a_mix_concatenates_its_parts_in_order_each_with_its_own_take(tmp_path):
    a = numbered(tmp_path, 30)
    b = write_parquet(tmp_path / "b.parquet", [{"problem": "B1", "answer": "1"}, {"problem": "B2", "answer": None}])
    loaded = load(name="mix", parts=[{"name": "local", "path": str(a), "take": 5}, {"path": str(b)}], seed=4)
    own = [p.question for p in load(path=str(a), take=5, seed=4).problems]
    assert [p.question for p in loaded.problems] == own + ["B1"]
    assert loaded.rejected == [Rejected(f"{b} row 1", "local:b.parquet", "field 'answer' is missing")]
    assert loaded.counts() == {"local:b.parquet": {"problems": 1, "rejected": 1},
                               "local:numbered.jsonl": {"problems": 5, "rejected": 0}}
    assert len(load(name="mix", parts=[{"path": str(a)}, {"path": str(b)}], limit=31).problems) == 31

    with pytest.raises(ValueError, match=r"part 1 has unknown key\(s\) 'subset'; valid keys: name, path"):
        load(name="mix", parts=[{"path": str(a)}, {"name": "numina", "subset": ["math"]}])
    with pytest.raises(ValueError, match="source mix: part 0, key limit: Value 'many' of type 'str' could not be "
                                         "converted to Integer$"):
        load(name="mix", parts=[{"path": str(a), "limit": "many"}])
    with pytest.raises(ValueError, match="part 0 cannot itself be a mix"):
        load(name="mix", parts=[{"name": "mix", "parts": [{"path": str(a)}]}])
    with pytest.raises(ValueError, match="source mix needs parts"):
        load(name="mix")
    with pytest.raises(FileNotFoundError, match="gone.jsonl") as err:
        load(name="mix", parts=[{"path": str(a)}, {"path": str(tmp_path / "gone.jsonl")}])
    assert "part 1: local" in str(err.value.__notes__)


# ------------------------------------------------------------------------------------------- hub sources


def test_numina_from_a_hub_layout_directory_filters_on_its_source_column(tmp_path, hf_cache):
    hub = tmp_path / "NuminaMath-CoT"
    rows = [
        {"source": "amc_aime", "problem": "p1", "solution": "So $x=5$.\n\\boxed{5}", "messages": []},
        {"source": "cn_k12", "problem": "p2", "solution": "no box, the answer is 3", "messages": []},
        {"source": "olympiads", "problem": "p3", "solution": "\\boxed{1} first, then \\fbox{\\frac{1}{2}}",
         "messages": []},
        {"source": "olympiads", "problem": "p4", "solution": "\\boxed{2", "messages": []},
        {"source": "gsm8k", "problem": "p5", "solution": "\\boxed{72}", "messages": []},
    ]
    write_parquet(hub / "data" / "train-00000-of-00001.parquet", rows)
    write_parquet(hub / "data" / "test-00000-of-00001.parquet", rows[:1])
    loaded = load(name="numina", path=str(hub))
    assert loaded.problems == [
        Problem(hand_id("math", "p1", "5"), "math", "p1", "numina/amc_aime", "5",
                meta={"solution": rows[0]["solution"]}),
        Problem(hand_id("math", "p3", "\\frac{1}{2}"), "math", "p3", "numina/olympiads", "\\frac{1}{2}",
                meta={"solution": rows[2]["solution"]}),
        Problem(hand_id("math", "p5", "72"), "math", "p5", "numina/gsm8k", "72", meta={"solution": "\\boxed{72}"}),
    ]
    assert [(r.where, r.source, r.reason) for r in loaded.rejected] == [
        (f"{hub} [train] row 1", "numina/cn_k12", "no \\boxed answer in solution"),
        (f"{hub} [train] row 3", "numina/olympiads", "the last \\boxed answer in solution is empty or never closed"),
    ]
    picked = load(name="numina", hub_name=str(hub), subsets=["olympiads", "amc_aime"])  # hub_name: a local dir too
    assert [p.question for p in picked.problems] == ["p1", "p3"] and len(picked.rejected) == 1
    assert [p.question for p in load(name="numina", path=str(hub), split="test").problems] == ["p1"]
    with pytest.raises(ValueError, match=r"none of its 5 records is in subsets \['aops_forum'\]"):
        load(name="numina", path=str(hub), subsets=["aops_forum"])
    with pytest.raises(ValueError, match="source numina: unknown subsets \\['amc'\\]"):
        load(name="numina", path=str(hub), subsets=["amc"])


APPS_ROWS = [
    {"id": 10, "question": "Print twice N.", "solutions": "[]", "difficulty": "introductory", "url": "u10",
     "starter_code": "", "input_output": json.dumps({"inputs": ["3\n"], "outputs": ["6\n"]})},
    {"id": 11, "question": "Add.", "solutions": "[]", "difficulty": "interview", "url": "u11",
     "starter_code": "def add(a, b):\n    ", "input_output": json.dumps(ADD_TESTS)},
    {"id": 12, "question": "No tests.", "solutions": "[]", "difficulty": "competition", "url": "u12",
     "starter_code": "", "input_output": ""},
]


def test_apps_reads_the_raw_hub_jsonl_a_parquet_copy_and_a_datasets_save(tmp_path, hf_cache):
    import datasets

    hub = tmp_path / "apps"
    hub.mkdir()
    write_jsonl(hub / "train.jsonl", APPS_ROWS)
    (hub / "test.jsonl").write_text('{"id": 1, "question": "bad line"\n', encoding="utf-8")
    stdin_tests = {"inputs": ["3\n"], "outputs": ["6\n"]}
    expected = [
        Problem(hand_id("code", "Print twice N.", None, stdin_tests), "code", "Print twice N.", "apps",
                tests=stdin_tests, difficulty="introductory", source_id="10", meta={"url": "u10"}),
        Problem(hand_id("code", "Add.", None, ADD_TESTS, "def add(a, b):\n    "), "code", "Add.", "apps",
                tests=ADD_TESTS, starter_code="def add(a, b):\n    ", difficulty="interview", source_id="11",
                meta={"url": "u11"}),
    ]
    loaded = load(name="apps", hub_name=str(hub))  # the raw file, as hf_hub_download would fetch it
    assert loaded.problems == expected
    assert [(r.where, r.reason) for r in loaded.rejected] == [
        (f"{hub / 'train.jsonl'}:3", "no tests (input_output is missing or empty)")]
    assert [p.source_id for p in load(name="apps", path=str(hub), subsets=["interview"]).problems] == ["11"]
    with pytest.raises(ValueError, match=r"test.jsonl: every record was rejected \(1\).*test.jsonl:1: not valid JSON"):
        load(name="apps", path=str(hub), split="test")

    renamed = [{("problem_id" if k == "id" else k): v for k, v in r.items()} for r in APPS_ROWS]  # the script's
    assert load(name="apps", path=str(write_parquet(tmp_path / "apps.parquet", renamed))).problems == expected
    datasets.DatasetDict({"train": datasets.Dataset.from_list(renamed)}).save_to_disk(str(tmp_path / "saved"))
    saved = load(name="apps", path=str(tmp_path / "saved"))
    assert saved.problems == expected and saved.rejected[0].where == f"{tmp_path / 'saved'} [train] row 2"
    with pytest.raises(ValueError, match="no split 'test'; it has train"):
        load(name="apps", path=str(tmp_path / "saved"), split="test")
    with pytest.raises(ValueError, match="source apps: unknown subsets"):
        load(name="apps", path=str(hub), subsets=["hard"])


def test_taco_reads_all_split_parquet_and_ids_are_row_indices_that_do_not_move(tmp_path, hf_cache):
    hub = tmp_path / "TACO"
    rows = [
        {"question": "Print twice N.", "solutions": "[]", "starter_code": "", "difficulty": "EASY", "url": "u0",
         "source": "codeforces", "input_output": json.dumps({"inputs": ["3\n"], "outputs": ["6\n"]})},
        {"question": "Lengths differ.", "solutions": "[]", "starter_code": "", "difficulty": "HARD", "url": "u1",
         "source": "codechef", "input_output": json.dumps({"inputs": ["1\n", "2\n"], "outputs": ["1\n"]})},
        {"question": "Add.", "solutions": "[]", "starter_code": "def add(a, b):\n    ", "difficulty": "HARD",
         "url": "u2", "source": "leetcode", "input_output": json.dumps(ADD_TESTS)},
    ]
    write_parquet(hub / "ALL" / "train-00000-of-00001.parquet", rows)
    loaded = load(name="taco", path=str(hub))
    assert loaded.problems[1] == Problem(hand_id("code", "Add.", None, ADD_TESTS, "def add(a, b):\n    "), "code",
                                         "Add.", "taco", tests=ADD_TESTS, starter_code="def add(a, b):\n    ",
                                         difficulty="HARD", source_id="2", meta={"site": "leetcode", "url": "u2"})
    assert [p.source_id for p in loaded.problems] == ["0", "2"]
    pattern = f"{hub}/ALL/train-*.parquet"
    assert [(r.where, r.reason) for r in loaded.rejected] == [(f"{pattern} row 1",
                                                               "input_output has 2 inputs but 1 outputs")]
    hard = load(name="taco", path=str(hub), subsets=["HARD"])
    assert [p.source_id for p in hard.problems] == ["2"] and len(hard.rejected) == 1


def hendrycks_row(problem: str, level: str, kind: str, answer: str) -> dict:
    return {"problem": problem, "level": level, "type": kind, "solution": f"Work. $\\boxed{{{answer}}}$"}


def test_math_reads_one_config_per_subject_and_a_single_file_filtered_on_type(tmp_path, hf_cache):
    hub = tmp_path / "hendrycks_math"  # as on the hub: a README naming one config per subject
    subjects = {"algebra": "Algebra", "counting_and_probability": "Counting & Probability"}
    card = "---\nconfigs:\n" + "".join(
        f"- config_name: {s}\n  data_files:\n  - split: train\n    path: {s}/train-*\n"
        f"  - split: test\n    path: {s}/test-*\n" for s in subjects) + "---\n"
    hub.mkdir()
    (hub / "README.md").write_text(card, encoding="utf-8")
    for i, (s, kind) in enumerate(subjects.items()):
        write_parquet(hub / s / "train-00000-of-00001.parquet",
                      [hendrycks_row(f"{s} 1", "Level 5", kind, str(i)), hendrycks_row(f"{s} 2", "Level ?", kind,
                                                                                       "\\frac{1}{2}")])
        write_parquet(hub / s / "test-00000-of-00001.parquet", [hendrycks_row(f"{s} test", "Level 1", kind, "9")])
    loaded = load(name="math", path=str(hub), subsets=list(subjects))
    assert [(p.question, p.answer, p.difficulty, p.meta["subject"]) for p in loaded.problems] == [
        ("algebra 1", "0", 5, "algebra"), ("algebra 2", "\\frac{1}{2}", None, "algebra"),
        ("counting_and_probability 1", "1", 5, "counting_and_probability"),
        ("counting_and_probability 2", "\\frac{1}{2}", None, "counting_and_probability")]
    assert loaded.problems[0] == Problem(hand_id("math", "algebra 1", "0"), "math", "algebra 1", "math", "0",
                                         difficulty=5, meta={"subject": "algebra", "level": "Level 5",
                                                             "solution": "Work. $\\boxed{0}$"})
    assert [p.question for p in load(name="math", hub_name=str(hub), hub_config="algebra", split="test").problems] \
        == ["algebra test"]
    (hub / "README.md").unlink()  # a copy without its card: one <subject>/ folder per config
    assert [p.question for p in load(name="math", path=str(hub), subsets=["counting_and_probability"]).problems] \
        == ["counting_and_probability 1", "counting_and_probability 2"]

    flat = tmp_path / "all_subjects.jsonl"  # one file holding every subject
    write_jsonl(flat, [hendrycks_row("g", "Level 2", "Geometry", "3"), hendrycks_row("n", "Level 3", "Number Theory",
                                                                                     "4"),
                       {"problem": "no solution", "level": "Level 1", "type": "Geometry"}])
    geometry = load(name="math", path=str(flat), subsets=["geometry"])
    assert [p.question for p in geometry.problems] == ["g"]
    assert [(r.where, r.reason) for r in geometry.rejected] == [(f"{flat}:3", "field 'solution' is missing")]


def test_aime_keeps_its_answers_as_written(tmp_path, hf_cache):
    hub = tmp_path / "aimo-validation-aime"
    hub.mkdir()
    write_parquet(hub / "data" / "train-00000-of-00001.parquet", [
        {"id": 1, "problem": "p1", "solution": "s", "answer": "023", "url": "https://aops/2024_AIME_I/Problem_1"},
        {"id": 2, "problem": "p2", "solution": "s", "answer": None, "url": "u"},
    ])
    loaded = load(name="aime", path=str(hub))
    assert loaded.problems == [Problem(hand_id("math", "p1", "023"), "math", "p1", "aime", "023", source_id="1",
                                       meta={"url": "https://aops/2024_AIME_I/Problem_1", "solution": "s"})]
    assert [(r.where, r.reason) for r in loaded.rejected] == [(f"{hub} [train] row 1", "field 'answer' is missing")]
    ints = write_jsonl(tmp_path / "aime_int.jsonl", [{"id": 3, "problem": "p3", "answer": 23}])
    assert [p.answer for p in load(name="aime", path=str(ints)).problems] == ["23"]


def test_still2_takes_the_answer_from_the_solution_part_and_maps_domains(tmp_path, hf_cache):
    def trace(thought: str, solution: str) -> str:
        return (f"<|begin_of_thought|>\n\n{thought}\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n{solution}"
                "\n\n<|end_of_solution|>")

    hub = tmp_path / "long_form_thought_data_5k"
    hub.mkdir()
    write_jsonl(hub / "data.jsonl", [
        {"question": "Physics q", "combined_text": trace("maybe \\boxed{2}", "so \\boxed{4\\,\\text{m}}"),
         "domain": "physics"},
        {"question": "Puzzle q", "combined_text": "no markers, answer \\boxed{Alice}", "domain": "puzzle"},
        {"question": "Chem q", "combined_text": trace("\\boxed{7}", "the solution forgot its box"),
         "domain": "chemistry"},
        {"question": "Code q", "combined_text": trace("", "```python\n```"), "domain": "code"},
        {"question": "Math q", "combined_text": trace("", "\\boxed{12}"), "domain": "math"},
    ])
    loaded = load(name="still2", hub_name=str(hub))  # load_dataset on a local directory, as on the hub
    assert loaded.problems == [
        Problem(hand_id("science", "Physics q", "4\\,\\text{m}"), "science", "Physics q", "still2", "4\\,\\text{m}",
                meta={"domain": "physics"}),
        Problem(hand_id("science", "Puzzle q", "Alice"), "science", "Puzzle q", "still2", "Alice",
                meta={"domain": "puzzle"}),
        Problem(hand_id("math", "Math q", "12"), "math", "Math q", "still2", "12", meta={"domain": "math"}),
    ]
    assert [(r.where, r.reason) for r in loaded.rejected] == [
        (f"{hub} [train] row 2", "no \\boxed answer in the solution part of combined_text"),
        (f"{hub} [train] row 3", "a code record carries no tests")]
    science = load(name="still2", path=str(hub), subsets=["puzzle", "physics", "chemistry", "biology"])
    assert [p.question for p in science.problems] == ["Physics q", "Puzzle q"] and len(science.rejected) == 1


def test_a_hub_source_given_a_missing_path_is_an_error(tmp_path):
    for name in ("numina", "apps", "taco", "math", "aime", "still2"):
        with pytest.raises(FileNotFoundError, match="no such file or directory: .*nowhere"):
            load(name=name, path=str(tmp_path / "nowhere"))


# ------------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not MATH500.is_file(), reason=f"needs the shared benchmark file {MATH500}")
def test_the_real_math500_file_loads_as_a_local_source_without_rejections():
    loaded = load(quiet=False, path=str(MATH500))
    assert len(loaded.problems) == 500 and loaded.rejected == []
    records = [json.loads(line) for line in MATH500.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert [(p.question, p.answer) for p in loaded.problems] == [(r["problem"], r["answer"]) for r in records]
    by_id: dict[str, tuple[str, str | None]] = {}
    for p in loaded.problems:  # ids repeat only where the content does
        assert by_id.setdefault(p.id, (p.question, p.answer)) == (p.question, p.answer)
    assert len(by_id) == len({(r["problem"], r["answer"]) for r in records})
    assert loaded.counts() == {"local:test.jsonl": {"problems": 500, "rejected": 0}}
