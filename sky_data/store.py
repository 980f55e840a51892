"""Files that survive a kill: atomic whole-file writes, and append-only JSONL logs that repair a torn last line.

    log = AppendLog(out_dir / "cache.jsonl")      # reads what is there; a last line cut short is dropped
    log.append({"hash": ..., "texts": [...]})     # one write() of one line, flushed: safe from any thread
    write_json_atomic(out_dir / "report.json", report)

Why this is enough: a SIGKILL loses nothing the process had handed to the OS, so a flushed line is either
whole in the file or, if the kill came during the write, the file's last line is cut short. Reopening drops
(and truncates away) such a tail and nothing else; a bad line anywhere before the end is damage, not a crash,
and is an error naming `file:line`. `fsync` (power loss) is done when a log is closed, not per line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["AppendLog", "EventLog", "read_json", "write_json_atomic", "write_jsonl_atomic", "write_text_atomic"]

log = logging.getLogger(__name__)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: readers see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomic(path: Path, records: Iterable[dict]) -> int:
    """Write one JSON object per line, atomically; returns the number of records."""
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    write_text_atomic(path, "".join(lines))
    return len(lines)


def read_json(path: Path) -> dict:
    try:
        out = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(out, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return out


class AppendLog:
    """An append-only JSONL file of objects. `records` holds what was read at open, `check(rec, where)` (if given)
    validates each one and raises ValueError for a bad record (reported with `file:line`)."""

    def __init__(self, path: Path, check: Callable[[dict, str], None] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = self._read(check)
        self._lock = threading.Lock()
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the log's lifetime

    def _read(self, check: Callable[[dict, str], None] | None) -> list[dict]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1  # everything after the last newline is a write cut short
        if keep < len(data):
            log.warning("%s: dropping a last line cut short (%d bytes)", self.path, len(data) - keep)
            with open(self.path, "r+b") as f:
                f.truncate(keep)
        records = []
        for lineno, raw in enumerate(data[:keep].split(b"\n")[:-1], start=1):
            if not raw.strip():
                continue
            where = f"{self.path}:{lineno}"
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{where}: not valid JSON ({e}); the file is damaged, not cut short by a "
                                 "crash: move it away to start this stage over") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            if check is not None:
                check(rec, where)
            records.append(rec)
        return records

    def append(self, rec: dict) -> None:
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventLog:
    """log.jsonl: one JSON object per event, with the time (structured logs of a run)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, event: str, **fields: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": round(time.time(), 3), "event": event, **fields}, default=str) + "\n")
