"""The request cache: every answered model request, keyed by what was asked, so no answer is paid for twice.

    cache = RequestCache(out_dir / "cache" / "requests.jsonl")
    h = request_hash("gpt-4o-mini", messages, sampling, key)
    gen = cache.get(h)                       # None: never answered
    cache.put(h, stage="rewrite", key=key, gen=gen, cost_usd=0.0012)

The hash covers the model name, the messages and every sampling setting, including the request's own seed
(`request_seed(sampling.seed, key)`), so a changed prompt, teacher, temperature or seed is a new request and
an unchanged one is served from the file. Requests that failed (`Generation.error`) are not cached: the next
run asks again. The file is an `AppendLog`, written as each answer arrives, so a run killed at any moment
keeps every answer it had received.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from sky_data.backends.base import Generation, SamplingConfig, request_seed
from sky_data.store import AppendLog

__all__ = ["RequestCache", "request_hash"]


def request_hash(model: str, messages: list[dict[str, str]], sampling: SamplingConfig, key: str) -> str:
    """sha256 of the canonical JSON of everything that decides the answer."""
    content = {"model": model, "messages": messages, "n": sampling.n, "temperature": sampling.temperature,
               "top_p": sampling.top_p, "max_tokens": sampling.max_tokens, "stop": list(sampling.stop),
               "seed": request_seed(sampling.seed, key)}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _check(rec: dict, where: str) -> None:
    texts = rec.get("texts")
    if not isinstance(rec.get("hash"), str) or not isinstance(texts, list) or not texts:
        raise ValueError(f"{where}: a cache record needs 'hash' and a non-empty 'texts' list")
    if not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{where}: 'texts' must be strings")
    for field in ("finish_reasons", "completion_tokens"):
        if not isinstance(rec.get(field), list) or len(rec[field]) != len(texts):
            raise ValueError(f"{where}: {field!r} must be a list of {len(texts)} entries")


class RequestCache:
    def __init__(self, path: Path) -> None:
        self.log = AppendLog(path, check=_check)
        self._by_hash: dict[str, dict] = {}
        for rec in self.log.records:
            self._by_hash.setdefault(rec["hash"], rec)  # the first answer wins; a later copy is never written

    def __len__(self) -> int:
        return len(self._by_hash)

    def get(self, h: str) -> Generation | None:
        rec = self._by_hash.get(h)
        if rec is None:
            return None
        return Generation(texts=rec["texts"], finish_reasons=rec["finish_reasons"],
                          prompt_tokens=rec.get("prompt_tokens"), completion_tokens=rec["completion_tokens"],
                          total_completion_tokens=rec.get("total_completion_tokens"))

    def records(self) -> list[dict]:
        """Every stored answer's record (hash, stage, key, tokens, cost_usd, time...), one per hash."""
        return list(self._by_hash.values())

    def put(self, h: str, stage: str, key: str, gen: Generation, cost_usd: float | None) -> None:
        if gen.error is not None or not gen.texts:
            raise ValueError(f"request {key!r}: a failed request is not cached ({gen.error})")
        if h in self._by_hash:
            return
        rec = {"hash": h, "stage": stage, "key": key, "texts": gen.texts, "finish_reasons": gen.finish_reasons,
               "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
               "total_completion_tokens": gen.total_completion_tokens, "cost_usd": cost_usd,
               "time": round(time.time(), 3)}
        self._by_hash[h] = rec
        self.log.append(rec)

    def close(self) -> None:
        self.log.close()
