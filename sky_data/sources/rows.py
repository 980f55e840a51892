"""Reading records, one `Row` at a time, from files of your own, `datasets` saves, and the hub.

Shared by sky_data's sources (lenient: a malformed record becomes a `Row` the loader rejects, and the run goes
on) and sky_eval's tasks (strict: `iter_jsonl`, `jsonl_rows` and `need` raise on the first bad record).

A row's `where` names its place exactly: `path:line` (JSONL, 1-based), `path row i` (a JSON list or a parquet
file, 0-based), `<hub name> (<config>) [<split>] row i` (`load_dataset` / `load_from_disk`). What cannot be
read at all (no such file, a directory for a file, not JSON, not parquet) is an error naming the file.
`datasets` is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["BadRecord", "Records", "Row", "Unreadable", "answer_text", "boxed_answer", "check_field",
           "check_subsets", "dataset_records", "file_records", "hub_file", "hub_rows", "iter_jsonl", "jsonl_rows",
           "need", "open_records"]

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


class Row(NamedTuple):
    index: int  # 0-based among the source's records, before any filter
    where: str  # "path:line", "path row i" or "<hub> row i": what a rejection or an error names
    record: Any  # a dict when well formed; lenient readers also pass other JSON values and `Unreadable`


class Unreadable(NamedTuple):
    """A record that is not even JSON (a lenient reader's stand-in for it)."""

    reason: str


class BadRecord(ValueError):
    """A record that cannot become a problem; `source` is the Problem.source it would have had, when known."""

    def __init__(self, reason: str, source: str | None = None) -> None:
        super().__init__(reason)
        self.source = source


@dataclass
class Records:
    label: str  # the file or hub dataset, as errors name it
    source: str  # the Problem.source of its records, for rejections a source cannot place more precisely
    rows: Iterable[Row]
    total: int | None = None  # how many rows, when known (the progress bar)


# ---------------------------------------------------------------------------------------------------------
# Fields


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
               dict: "an object"}


def check_field(rec: dict, key: str, kind: type | tuple[type, ...] = str, required: bool = True,
                nonempty: bool = True) -> Any:
    """`rec[key]`, checked: present (unless not `required`: then None), of `kind`, and not blank when a string.
    A failure is a `BadRecord` naming the field."""
    value = rec.get(key)
    if value is None:
        if required:
            raise BadRecord(f"field {key!r} is missing")
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
        raise BadRecord(f"field {key!r} must be {names}, got {type(value).__name__} {str(value)[:60]!r}")
    if nonempty and isinstance(value, str) and not value.strip():
        raise BadRecord(f"field {key!r} is empty")
    return value


def need(rec: dict, key: str, where: str, kind: type | tuple[type, ...] = str, required: bool = True,
         nonempty: bool = True) -> Any:
    """`check_field`, as a ValueError naming `where` too (sky_eval's strict loading)."""
    try:
        return check_field(rec, key, kind, required, nonempty)
    except BadRecord as e:
        raise ValueError(f"{where}: {e}") from None


def check_subsets(source: str, subsets: list[str], known: tuple[str, ...]) -> None:
    """`subsets` must be drawn from `known` (a typo would otherwise silently keep nothing)."""
    unknown = [s for s in subsets if s not in known]
    if unknown:
        raise ValueError(f"source {source}: unknown subsets {unknown}; known: {', '.join(known)}")


def answer_text(value: Any) -> str:
    """A gold answer as text: a string as it is ("023" stays), a number as its shortest form (27.0 -> "27")."""
    if isinstance(value, str):
        if not value.strip():
            raise BadRecord("field 'answer' is empty")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRecord(f"field 'answer' must be a string or a number, got {type(value).__name__}")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise BadRecord(f"field 'answer' is {value}")
        if value.is_integer():
            return str(int(value))
    return str(value)


_BOX = re.compile(r"\\(?:boxed|fbox|framebox)(?![A-Za-z])")


def boxed_answer(text: str, what: str = "solution") -> str:
    """The last \\boxed{} of a reference solution (the verifier's `extract_answer`, which also reads \\fbox and
    \\framebox and joins "\\boxed{1}, \\boxed{2}"); a `BadRecord` when there is none or it is empty/unclosed."""
    from sky_data.verify.math import extract_answer

    if not _BOX.search(text):
        raise BadRecord(f"no \\boxed answer in {what}")
    answer = extract_answer(text)
    if answer is None or not answer.strip():
        raise BadRecord(f"the last \\boxed answer in {what} is empty or never closed")
    return answer


# ---------------------------------------------------------------------------------------------------------
# JSONL


def _jsonl_values(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line; a line that is not JSON gives an `Unreadable`. Lines are
    decoded one by one, so one bad byte costs one line; a UTF-8 BOM and CRLF line ends are accepted."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield lineno, Unreadable("not valid UTF-8")
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, Unreadable(f"not valid JSON ({e.msg})")
            except RecursionError:
                yield lineno, Unreadable("not valid JSON (nested too deeply)")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) of each non-blank line; a bad line is an error naming the file and line."""
    for lineno, value in _jsonl_values(Path(path)):
        if isinstance(value, Unreadable):
            raise ValueError(f"{path}:{lineno}: {value.reason}")
        if not isinstance(value, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(value).__name__}")
        yield lineno, value


def jsonl_rows(paths: Iterable[Path]) -> Iterator[Row]:
    """The records of one or more JSONL files in order, strictly; the index runs on across files."""
    index = 0
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such file: {path}")
        for lineno, rec in iter_jsonl(Path(path)):
            yield Row(index, f"{path}:{lineno}", rec)
            index += 1


# ---------------------------------------------------------------------------------------------------------
# Files of your own, leniently


def file_records(path: str | Path, source: str) -> Records:
    """The records of a `.jsonl`, `.json` (a list of objects) or `.parquet` file. The file is checked now (it
    exists, is a file, parses as a whole for JSON, has a parquet footer); its records are read as iterated."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; expected a {', '.join(FILE_SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_records(path, source)
    if suffix == ".json":
        values = _json_list(path)
        if values is None:  # JSON Lines under a .json name
            return _jsonl_records(path, source)
        return Records(str(path), source, (Row(i, f"{path} row {i}", v) for i, v in enumerate(values)),
                       len(values))
    if suffix == ".parquet":
        return _parquet_records(path, source)
    raise ValueError(f"{path}: unknown file type {path.suffix!r}; expected {', '.join(FILE_SUFFIXES)}")


def _jsonl_records(path: Path, source: str) -> Records:
    return Records(str(path), source, (Row(i, f"{path}:{lineno}", value)
                                       for i, (lineno, value) in enumerate(_jsonl_values(path))))


def _json_list(path: Path) -> list | None:
    """A .json file's list of records; None when it holds JSON Lines instead (one object per line)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            return None
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(value).__name__}")
    return value


def _parquet_records(path: Path, source: str) -> Records:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001  (pyarrow raises several kinds for a file that is not parquet)
        raise ValueError(f"{path}: not a parquet file ({type(e).__name__}: {e})") from None

    def rows() -> Iterator[Row]:
        i = 0
        for batch in pf.iter_batches(batch_size=1024):
            for rec in batch.to_pylist():
                yield Row(i, f"{path} row {i}", rec)
                i += 1

    return Records(str(path), source, rows(), pf.metadata.num_rows)


# ---------------------------------------------------------------------------------------------------------
# The hub, local copies of it, `datasets` saves


def hub_rows(path: str, name: str | None, split: str) -> Iterator[Row]:
    """The rows of `load_dataset(path, name, split=split)` (a hub repository, or a local directory like one)."""
    records = dataset_records(path, name, split, source="")
    yield from records.rows


def dataset_records(path: str, name: str | None, split: str, source: str) -> Records:
    """`load_dataset(path, name, split=split)`, or `load_from_disk(path)[split]` for a `save_to_disk` dir."""
    import datasets

    label = f"{path}" + (f" ({name})" if name else "") + f" [{split}]"
    if is_saved_dataset(path):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{path}: no split {split!r}; it has {', '.join(ds)}")
            ds = ds[split]
    else:
        ds = datasets.load_dataset(path, name, split=split)
    return Records(label, source, (Row(i, f"{label} row {i}", rec) for i, rec in enumerate(ds)), len(ds))


def is_saved_dataset(path: str | Path) -> bool:
    """A directory `Dataset.save_to_disk` (state.json) or `DatasetDict.save_to_disk` (dataset_dict.json) wrote."""
    p = Path(path)
    return p.is_dir() and ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file())


def hub_file(repo: str, filename: str) -> Path:
    """A raw file of a hub dataset repository (downloaded once, then cached by huggingface_hub), or of a local
    directory standing in for one. For repositories whose loading script `datasets>=4` no longer runs."""
    if Path(repo).is_dir():
        return Path(repo) / filename
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset"))


def open_records(path: str | None, hub: str, config: str | None, split: str, source: str) -> Records:
    """Where a hub source's records come from, in this order:

    - `path`, a file: read leniently (`file_records`);
    - `path`, a directory: a `save_to_disk` save; else one holding `<split>.jsonl` (a raw hub layout such as
      codeparrot/apps') is read leniently; else `load_dataset(path, config, split=split)`;
    - no `path`: `load_dataset(hub, config, split=split)` (`hub` may also name a local directory).
    """
    if path is None:
        if Path(hub).is_dir():
            return open_records(hub, hub, config, split, source)
        return dataset_records(hub, config, split, source)
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or directory: {p}")
    if p.is_file():
        return file_records(p, source)
    if is_saved_dataset(p):
        return dataset_records(str(p), None, split, source)
    if (p / f"{split}.jsonl").is_file():
        return file_records(p / f"{split}.jsonl", source)
    return dataset_records(str(p), config, split, source)
