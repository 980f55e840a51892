"""What every generation backend takes and returns: chat requests in, n sampled responses per request out.

One implementation serves both sky_data's generate stage (teacher traces) and sky_eval (benchmark responses);
sky_eval imports these, never the reverse.

Seeds: each request is sampled with its own seed, `request_seed(sampling.seed, request.key)`, so that the
responses to a problem do not depend on which other problems share its batch, on the batch size, or on
whether the run was resumed. Backends that cannot seed per request (OpenAI-compatible servers that ignore
`seed`) say so in `info()`.

Streaming results: `generate(..., on_result=f)` calls `f(i, generation)` once per request, in the caller's thread
or the backend's worker thread, as soon as request i is complete (the `openai` and `ray` backends: as replies
arrive; the others: when the call's work is done). sky_data's generate stage writes each one to disk there, so
a run killed mid-call keeps every answer that had arrived.

Failed requests: by default one request that cannot be answered fails the whole call. Backends that talk to a
server take `errors="record"` as well: a request refused for its own content (HTTP 400/413/422: a prompt over
the context length, content filters) then comes back as a Generation with no texts and `error` set, and the
others go on. Faults that concern every request (a bad key, an unknown model, a server that stays down after
the retries) still fail the call.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["Backend", "Generation", "OnResult", "Request", "SamplingConfig", "request_seed"]


@dataclass(frozen=True)
class SamplingConfig:
    n: int = 1  # responses per request
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    max_tokens: int = 4096  # new tokens per response
    seed: int = 0  # base seed; each request's own seed is request_seed(seed, key)
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Request:
    messages: list[dict[str, str]]  # chat messages: [{"role": "system"|"user"|"assistant", "content": ...}]
    key: str = ""  # the caller's stable id of this request ("math500:test/algebra/1.json"): seeds, replay, errors


@dataclass
class Generation:
    texts: list[str]  # n responses, in sample order
    finish_reasons: list[str | None] = field(default_factory=list)  # "stop", "length" (truncated) or None
    prompt_tokens: int | None = None
    completion_tokens: list[int | None] = field(default_factory=list)  # per response; None when unknown
    error: str | None = None  # set (and texts empty) only when the request itself was refused (errors="record")
    total_completion_tokens: int | None = None  # all n responses' new tokens as the server billed them (usage)

    def __post_init__(self) -> None:
        k = len(self.texts)
        if self.error is not None and k:
            raise ValueError(f"a failed generation has no texts, got {k}")
        if not self.finish_reasons:
            self.finish_reasons = [None] * k
        if not self.completion_tokens:
            self.completion_tokens = [None] * k
        if len(self.finish_reasons) != k or len(self.completion_tokens) != k:
            raise ValueError(f"{k} texts but {len(self.finish_reasons)} finish reasons and "
                             f"{len(self.completion_tokens)} token counts")


OnResult = Callable[[int, Generation], None]  # (request index, its generation), once per request


@runtime_checkable
class Backend(Protocol):
    name: str  # "vllm", "openai", "ray", "transformers", "replay"

    def generate(self, requests: list[Request], sampling: SamplingConfig, progress: bool = True,
                 on_result: OnResult | None = None) -> list[Generation]:
        """One Generation of exactly `sampling.n` texts per request, in request order (see the module docstring
        for `on_result` and for failed requests)."""
        ...

    def info(self) -> dict[str, Any]:
        """What produced the responses, for results files: engine, its version, model, dtype, parallelism..."""
        ...

    def close(self) -> None:
        ...


def request_seed(seed: int, key: str) -> int:
    """A request's own seed: a 31-bit hash of the base seed and the request key (stable across runs/machines)."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
