"""Saved responses played back as a backend: score a run again, or test sky_eval end to end, with no model.

    from sky_data.backends import make_backend
    backend = make_backend("replay", path="responses.jsonl")

The file is JSONL, one line per problem:

    {"task": "aime24", "id": 60, "responses": ["...", "..."],
     "finish_reasons": ["stop", "length"], "completion_tokens": [812, 4096]}   # last two optional

A request's key is `f"{task}:{id}"` with `str(id)`, so the ids 60 and "60" are the same problem; sky_eval
builds `Request.key` exactly that way. The sampling settings other than `n` are not checked: the responses
were sampled elsewhere, and `info()` records which file (and its sha256) they came from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sky_data.backends.base import Generation, OnResult, Request, SamplingConfig

__all__ = ["MissingResponsesError", "ReplayBackend", "replay_key"]

_EXAMPLES = 5  # missing keys shown in an error


def replay_key(task: str, id_: str | int) -> str:
    """The request key of a problem: `f"{task}:{id}"`; an int id and its decimal string give the same key."""
    return f"{task}:{id_}"


class MissingResponsesError(KeyError):
    """Requests with no line in the replay file. A KeyError whose message prints as written, not repr'd."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _optional_list(value: Any, name: str, k: int, ok: type | tuple[type, ...], where: str) -> list:
    if value is None:
        return [None] * k
    if not isinstance(value, list) or len(value) != k:
        raise ValueError(f"{where}: {name!r} must be a list of {k} entries (one per response)")
    for v in value:
        # bool is an int subclass; a token count of True is a mistake, not 1
        if v is not None and (not isinstance(v, ok) or isinstance(v, bool)):
            raise ValueError(f"{where}: {name!r} has an entry of type {type(v).__name__}: {v!r:.80}")
    return value


def load_replay(path: str | Path) -> tuple[dict[str, Generation], str]:
    """Read a replay file: {key: Generation with all saved responses}, and the file's sha256.

    Errors name the file and line. The file is read once, in binary, so the hash is of exactly what was parsed."""
    path = Path(path)
    records: dict[str, Generation] = {}
    first_line: dict[str, int] = {}
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            digest.update(raw)
            where = f"{path}:{lineno}"
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{where}: not valid JSON ({e})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            missing = [k for k in ("task", "id", "responses") if k not in rec]
            if missing:
                raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
            task, id_, responses = rec["task"], rec["id"], rec["responses"]
            if not isinstance(task, str) or not task:
                raise ValueError(f"{where}: 'task' must be a non-empty string, got {task!r:.80}")
            if isinstance(id_, bool) or not isinstance(id_, (str, int)):
                raise ValueError(f"{where}: 'id' must be a string or an integer, got {id_!r:.80}")
            if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
                raise ValueError(f"{where}: 'responses' must be a list of strings")
            k = len(responses)
            finish = _optional_list(rec.get("finish_reasons"), "finish_reasons", k, str, where)
            tokens = _optional_list(rec.get("completion_tokens"), "completion_tokens", k, int, where)
            key = replay_key(task, id_)
            if key in records:
                raise ValueError(f"{where}: duplicate problem {key!r} (first on line {first_line[key]})")
            first_line[key] = lineno
            records[key] = Generation(texts=responses, finish_reasons=finish, completion_tokens=tokens)
    return records, digest.hexdigest()


class ReplayBackend:
    name = "replay"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._records, self._sha256 = load_replay(self.path)

    def generate(self, requests: list[Request], sampling: SamplingConfig, progress: bool = True,
                 on_result: OnResult | None = None) -> list[Generation]:
        missing = [r.key for r in requests if r.key not in self._records]
        if missing:
            shown = ", ".join(repr(k) for k in missing[:_EXAMPLES])
            more = f" (and {len(missing) - _EXAMPLES} more)" if len(missing) > _EXAMPLES else ""
            raise MissingResponsesError(
                f"{self.path}: no responses for {len(missing)} of {len(requests)} requests: {shown}{more}; "
                f"keys are 'task:id', and the file has {len(self._records)} problems")
        out = []
        n = sampling.n
        for r in requests:
            g = self._records[r.key]
            if len(g.texts) < n:
                raise ValueError(f"{self.path}: {r.key!r} has {len(g.texts)} saved responses, {n} asked for")
            # the first n: a file with 64 samples per problem serves avg@16 with the same responses every time
            out.append(Generation(texts=g.texts[:n], finish_reasons=g.finish_reasons[:n],
                                  prompt_tokens=None, completion_tokens=g.completion_tokens[:n]))
        if on_result is not None:
            for i, g in enumerate(out):
                on_result(i, g)
        return out

    def info(self) -> dict[str, Any]:
        return {"engine": "replay", "path": str(self.path), "sha256": self._sha256, "problems": len(self._records)}

    def close(self) -> None:
        pass
