"""Generation through any OpenAI-compatible chat completions server: vLLM or SGLang serving a model, a hosted API.

    from sky_data.backends import make_backend
    backend = make_backend("openai", model="Qwen/QwQ-32B-Preview", base_url="http://127.0.0.1:8000/v1",
                           concurrency=64)
    # replicas of one model (several `vllm serve`), and refused requests recorded instead of failing the call
    backend = make_backend("openai", model="qwq", base_url=["http://node1:8000/v1", "http://node2:8000/v1"],
                           concurrency=128, errors="record")

A local vLLM server for it:
    python -m vllm.entrypoints.openai.api_server --model DIR --served-model-name NAME --port 8000

What holds:
- Each request asks for all `n` responses at once; a server that returns fewer (some cap `n`, some ignore it)
  is asked again for the rest, with the seed moved on by the number already collected. vLLM seeds the i-th
  sample of a seeded request `seed + i`, so against vLLM the responses are the same however they were split.
- Faults that pass are retried with exponential backoff and jitter (and `Retry-After` when the server sends
  one): 408, 409, 425, 429 and 5xx replies, timeouts, dropped connections, and 200 replies that are malformed:
  not JSON, no choices, more choices than asked, a bad or repeated `index`, a choice whose content is null.
  Other 4xx replies (400 bad request, 401 bad key, 404 unknown model) fail at once; errors name the request key.
- `errors="raise"` (default): a request that fails fails the whole call. `errors="record"`: a request refused
  for its own content (HTTP 400, 413, 422: a prompt over the context length, a content filter) comes back as
  `Generation(texts=[], error="HTTP 400: <body>")`, any responses already collected for it dropped, and the
  others go on. 401, 403, 404 (a bad key, an unknown model: every request would fail) and faults still there
  after the retries fail the call either way.
- `on_result(i, generation)` is called once per request, as its reply arrives, in the backend's worker thread
  (on its event loop: keep it short, e.g. append a line to a file). An exception it raises fails the call like
  a failed request.
- `base_url` may be a list: replicas serving the same model, one client each. A request goes to the replica
  with the fewest requests in flight (ties: round robin), skipping, while others are ready, a replica that
  faulted for a cooling time that doubles with each fault in a row (from `backoff_s` up to `max_backoff_s`;
  a good reply resets it), so a dead replica is tried ever less often. A retry after a fault goes to another
  replica when one is ready, at once (the attempt counts against `max_retries`); it waits out its backoff only
  when none is, as with one URL.
- At most `concurrency` HTTP requests are in flight, over all replicas; backoff waits do not hold a slot.
- `generate` runs its own event loop in a worker thread, so it works from plain code and from inside a
  running loop (a notebook, an async caller) alike.
- vLLM servers apply the model's generation_config.json sampling defaults (top_k, repetition_penalty, ...) to
  whatever a request leaves out, unlike the in-process `vllm` backend; start the server with
  `--generation-config vllm` (or pass them in `extra_body`) to sample with exactly the SamplingConfig.
- Token counts: `usage.prompt_tokens`; per response, the length of the choice's `token_ids` when the server
  gives them (vLLM: `extra_body={"return_token_ids": True}`), else `usage.completion_tokens` when the reply
  holds one choice, else unknown (None). `Generation.total_completion_tokens` is the server's
  `usage.completion_tokens` of the request's replies, summed (billed tokens, for cost), so a reply of n > 1
  choices without `token_ids` keeps its total; None when a reply had no usage.
- The API key is `api_key`, else the environment variable `api_key_env`, else "EMPTY" (local servers ignore it).
  It is never logged, put in errors or in `info()`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from sky_data.backends.base import Generation, OnResult, Request, SamplingConfig, request_seed

__all__ = ["MalformedReply", "OpenAIBackend", "parse_reply"]

RETRY_STATUS = frozenset({408, 409, 425, 429})  # and every 5xx
REFUSED_STATUS = frozenset({400, 413, 422})  # the request's own content; errors="record" keeps them per request
ERRORS = ("raise", "record")
_SHOWN = 300  # characters of a server's error body kept in our error messages


class MalformedReply(ValueError):
    """A 200 reply that is not a usable chat completion; retried like a 5xx."""


class _Refused(Exception):
    """A request the server refused for its own content (errors="record")."""


@dataclass
class Reply:
    texts: list[str]
    finish_reasons: list[str | None]
    completion_tokens: list[int | None]
    prompt_tokens: int | None
    total_completion_tokens: int | None = None  # usage.completion_tokens: all choices together


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_reply(body: bytes, asked: int) -> Reply:
    """The choices of a chat completion body, ordered by `index`; MalformedReply if it cannot be trusted."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MalformedReply(f"the body is not JSON: {body[:_SHOWN]!r}") from None
    if not isinstance(data, dict):
        raise MalformedReply(f"the body is a JSON {type(data).__name__}, not an object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedReply(f"no choices in the reply: {body[:_SHOWN]!r}")
    if len(choices) > asked:
        # checked before looking at any choice, so a reply with a million choices costs nothing more
        raise MalformedReply(f"{len(choices)} choices for n={asked}")
    by_index: dict[int, tuple[str, str | None, int | None]] = {}
    for pos, c in enumerate(choices):
        if not isinstance(c, dict):
            raise MalformedReply(f"choice {pos} is a {type(c).__name__}, not an object")
        index = c.get("index", pos)
        if _int(index) is None or index >= asked or index in by_index:
            raise MalformedReply(f"choice {pos} has index {index!r} (n={asked}, indices seen {sorted(by_index)})")
        message = c.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise MalformedReply(f"choice {index} has no text content (content is {content!r:.40})")
        finish = c.get("finish_reason")
        token_ids = c.get("token_ids")
        by_index[index] = (content, finish if isinstance(finish, str) else None,
                           len(token_ids) if isinstance(token_ids, list) else None)
    ordered = [by_index[i] for i in sorted(by_index)]
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = [t for _, _, t in ordered]
    if len(ordered) == 1 and tokens[0] is None:
        tokens = [_int(usage.get("completion_tokens"))]  # one choice: the reply's total is its count
    prompt_tokens = _int(usage.get("prompt_tokens"))
    if prompt_tokens is None and isinstance(data.get("prompt_token_ids"), list):
        prompt_tokens = len(data["prompt_token_ids"])
    total = _int(usage.get("completion_tokens"))
    if total is None and None not in tokens:
        total = sum(tokens)
    return Reply(texts=[t for t, _, _ in ordered], finish_reasons=[f for _, f, _ in ordered],
                 completion_tokens=tokens, prompt_tokens=prompt_tokens, total_completion_tokens=total)


def _run_in_thread(make: Any) -> Any:
    """Run the coroutine `make(register)` on a fresh event loop in a worker thread and return its result.

    `register(loop, task)` lets Ctrl-C in the calling thread cancel the work instead of leaving it running."""
    result: Future = Future()
    handle: dict[str, Any] = {}

    def register(loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
        handle.update(loop=loop, task=task)

    def target() -> None:
        try:
            result.set_result(asyncio.run(make(register)))
        except BaseException as e:  # noqa: B036 - handed to the caller's thread, which re-raises it
            result.set_exception(e)

    thread = threading.Thread(target=target, name="openai-backend", daemon=True)
    thread.start()
    try:
        return result.result()
    except KeyboardInterrupt:
        if "task" in handle:
            handle["loop"].call_soon_threadsafe(handle["task"].cancel)
        thread.join(timeout=10)
        raise


class _Replicas:
    """One generate call's clients, one per base URL, and how busy each is; used from its event loop only.
    `cool_until` and `streak` are the backend's, kept from call to call: a replica found dead stays avoided."""

    def __init__(self, clients: list[Any], cool_until: list[float], streak: list[int], backoff_s: float,
                 max_backoff_s: float) -> None:
        self.clients = clients
        self.in_flight = [0] * len(clients)
        self.cool_until = cool_until  # time.monotonic() until which a replica that faulted is skipped
        self.streak = streak  # faults since its last good reply: a dead replica is tried ever less often
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self._next = 0  # round robin among equally busy replicas

    def pick(self, avoid: int | None = None) -> int:
        """The least busy ready replica, other than `avoid` if there is another."""
        n = len(self.clients)
        now = time.monotonic()
        ids = [i for i in range(n) if i != avoid] or list(range(n))
        ready = [i for i in ids if self.cool_until[i] <= now] or ids
        least = min(self.in_flight[i] for i in ready)
        i = min((i for i in ready if self.in_flight[i] == least), key=lambda i: (i - self._next) % n)
        self._next = (i + 1) % n
        return i

    def other_ready(self, i: int) -> bool:
        now = time.monotonic()
        return any(j != i and self.cool_until[j] <= now for j in range(len(self.clients)))

    def faulted(self, i: int, wait: float) -> None:
        self.streak[i] += 1
        cool = max(wait, min(self.max_backoff_s, self.backoff_s * 2 ** (self.streak[i] - 1)))
        self.cool_until[i] = max(self.cool_until[i], time.monotonic() + cool)

    def answered(self, i: int) -> None:
        self.streak[i] = 0


class OpenAIBackend:
    name = "openai"

    def __init__(self, model: str, base_url: str | list[str] | None = None, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 16, max_retries: int = 6,
                 timeout_s: float = 600.0, send_seed: bool = True, extra_body: dict[str, Any] | None = None,
                 backoff_s: float = 1.0, max_backoff_s: float = 60.0, errors: str = "raise") -> None:
        import openai  # noqa: F401 - fail here, at construction, if the package is missing

        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if errors not in ERRORS:
            raise ValueError(f"errors must be one of {', '.join(ERRORS)}, got {errors!r}")
        self._single = base_url is None or isinstance(base_url, str)
        if self._single:
            self._urls: list[str | None] = [base_url]
        else:
            self._urls = list(base_url)  # a list, a tuple, an OmegaConf ListConfig
            if not self._urls or not all(isinstance(u, str) and u for u in self._urls):
                raise ValueError(f"base_url must be a URL or a non-empty list of URLs, got {base_url!r}")
            if len(set(self._urls)) != len(self._urls):
                raise ValueError(f"base_url lists a URL more than once: {self._urls}")
        self.base_url = base_url if self._single else list(self._urls)
        self.model = model
        self._api_key = api_key or os.environ.get(api_key_env) or "EMPTY"
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.send_seed = send_seed
        self.extra_body = dict(extra_body or {})
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.errors = errors
        self._cool_until = [0.0] * len(self._urls)  # replica health, kept from call to call (see _Replicas)
        self._streak = [0] * len(self._urls)
        self._server: dict[str, Any] | list[dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r})"

    def generate(self, requests: list[Request], sampling: SamplingConfig, progress: bool = True,
                 on_result: OnResult | None = None) -> list[Generation]:
        """One Generation per request, in request order. `on_result(i, generation)` runs in the backend's worker
        thread as each request completes; an exception it raises fails the call like a failed request."""
        if not requests:
            return []
        return _run_in_thread(lambda register: self._generate_all(requests, sampling, progress, on_result, register))

    async def _generate_all(self, requests: list[Request], sampling: SamplingConfig, progress: bool,
                            on_result: OnResult | None, register: Any) -> list[Generation]:
        import openai

        register(asyncio.get_running_loop(), asyncio.current_task())
        # our own retries, not the SDK's: it does not retry malformed 200s, and we want one budget per call
        pool = _Replicas([openai.AsyncOpenAI(base_url=url, api_key=self._api_key, timeout=self.timeout_s,
                                             max_retries=0) for url in self._urls],
                         self._cool_until, self._streak, self.backoff_s, self.max_backoff_s)
        slots = asyncio.Semaphore(self.concurrency)  # over all replicas
        bar = tqdm(total=len(requests), desc="generate", disable=not progress)

        async def one(i: int, req: Request) -> Generation:
            gen = await self._generate_one(pool, slots, req, sampling)
            if on_result is not None:
                on_result(i, gen)
            bar.update(1)
            return gen

        tasks = [asyncio.ensure_future(one(i, r)) for i, r in enumerate(requests)]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
            if failed:
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                raise failed[0].exception()
            return [t.result() for t in tasks]
        finally:
            bar.close()
            for client in pool.clients:
                await client.close()

    async def _generate_one(self, pool: _Replicas, slots: asyncio.Semaphore, req: Request,
                            sampling: SamplingConfig) -> Generation:
        seed = request_seed(sampling.seed, req.key)
        texts: list[str] = []
        finish: list[str | None] = []
        tokens: list[int | None] = []
        prompt_tokens = None
        total: int | None = 0
        # every reply holds at least one choice, so this loop makes at most n calls
        while len(texts) < sampling.n:
            try:
                reply = await self._call(pool, slots, req, sampling, sampling.n - len(texts), seed + len(texts))
            except _Refused as e:
                return Generation(texts=[], error=str(e))  # a failed request has no texts, even collected ones
            texts += reply.texts
            finish += reply.finish_reasons
            tokens += reply.completion_tokens
            prompt_tokens = prompt_tokens if reply.prompt_tokens is None else reply.prompt_tokens
            total = None if total is None or reply.total_completion_tokens is None \
                else total + reply.total_completion_tokens
        return Generation(texts=texts, finish_reasons=finish, prompt_tokens=prompt_tokens, completion_tokens=tokens,
                          total_completion_tokens=total)

    async def _call(self, pool: _Replicas, slots: asyncio.Semaphore, req: Request, sampling: SamplingConfig,
                    n: int, seed: int) -> Reply:
        """One chat completion with n choices, retried on faults that pass (see the module docstring)."""
        import openai

        params: dict[str, Any] = {"model": self.model, "messages": req.messages, "n": n,
                                  "temperature": sampling.temperature, "top_p": sampling.top_p,
                                  "max_tokens": sampling.max_tokens}
        if sampling.stop:
            params["stop"] = list(sampling.stop)
        if self.send_seed:
            params["seed"] = seed
        if self.extra_body:
            params["extra_body"] = self.extra_body
        last = ""
        faulted: int | None = None  # the replica of the last fault: the retry prefers another
        tried: list[str] = []
        for attempt in range(self.max_retries + 1):
            wait = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
            async with slots:
                r = pool.pick(avoid=faulted)
                client = pool.clients[r]
                if str(client.base_url) not in tried:
                    tried.append(str(client.base_url))
                pool.in_flight[r] += 1
                try:
                    raw = await client.chat.completions.with_raw_response.create(**params)
                    reply = parse_reply(raw.http_response.content, n)
                    pool.answered(r)
                    return reply
                except openai.APIStatusError as e:
                    status = e.status_code
                    detail = (e.response.text or "")[:_SHOWN]
                    if status < 500 and status not in RETRY_STATUS:
                        if self.errors == "record" and status in REFUSED_STATUS:
                            raise _Refused(f"HTTP {status}: {detail}") from None
                        raise RuntimeError(f"request {req.key!r}: HTTP {status} from {client.base_url} "
                                           f"(not retried): {detail}") from None
                    last = f"HTTP {status}: {detail}"
                    retry_after = e.response.headers.get("retry-after", "")
                    try:
                        wait = max(wait, min(self.max_backoff_s, float(retry_after)))
                    except ValueError:
                        pass  # absent, or an HTTP date: our own backoff
                except openai.APITimeoutError:
                    last = f"timed out after {self.timeout_s} s"
                except openai.APIConnectionError as e:
                    last = f"connection error: {e.__cause__ or e}"
                except MalformedReply as e:
                    last = f"malformed reply: {e}"
                finally:
                    pool.in_flight[r] -= 1
            pool.faulted(r, wait)
            faulted = r
            # another ready replica takes the retry at once; otherwise back off (outside the slot)
            if attempt < self.max_retries and not pool.other_ready(r):
                await asyncio.sleep(wait)
        raise RuntimeError(f"request {req.key!r}: gave up after {self.max_retries + 1} attempts "
                           f"to {', '.join(tried)}; last: {last}")

    def server_models(self, base_url: str | None = None) -> dict[str, Any]:
        """What a server's /v1/models says about this model (vLLM: root, max_model_len), or why it could not.
        `base_url`: one replica's URL (default: the first)."""
        import openai

        url = self._urls[0] if base_url is None else base_url
        try:
            client = openai.OpenAI(base_url=url, api_key=self._api_key, timeout=10.0, max_retries=0)
            entries = [m.model_dump() for m in client.models.list()]
            client.close()
        except Exception as e:  # noqa: BLE001 - optional provenance: record the failure, don't raise it
            return {"error": f"{type(e).__name__}"}
        keep = ("id", "root", "owned_by", "max_model_len")
        match = [{k: m[k] for k in keep if k in m} for m in entries if m.get("id") == self.model]
        return match[0] if match else {"error": f"model {self.model!r} not listed", "listed": len(entries)}

    def info(self) -> dict[str, Any]:
        """Provenance. With replicas, `base_url` is their list and `server` one entry per replica, in order."""
        import openai

        if self._server is None:
            servers = [self.server_models(url) for url in self._urls]
            self._server = servers[0] if self._single else servers
        if self._single:
            base: str | list[str] = self.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        else:
            base = list(self._urls)
        return {"engine": "openai-compatible", "openai": openai.__version__, "base_url": base, "model": self.model,
                "server": self._server, "seed_sent": self.send_seed, "concurrency": self.concurrency,
                "max_retries": self.max_retries, "extra_body": self.extra_body, "errors": self.errors}

    def close(self) -> None:
        pass
