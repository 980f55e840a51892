"""The `ray` backend: Ray Data's HTTP processor against the scripted fake server (`sky_data.fake_server`), the reply
classification and vLLM rows it builds, and, where vLLM is installed, the same requests through a real vLLM server.

One local Ray instance (2 CPUs) for the whole module. Every Ray Data job starts its actors afresh (about 3 s here,
the first one about 9 s), and each retry round is one job, so the fault tests put all their faults in one call.
Without Ray these skip, unless SKY_REQUIRE_RAY=1 (CI), where a missing Ray is a failure. The pure functions
(reply classification, payloads, vLLM rows) run everywhere. Ray's own vLLM engines (engine="vllm") take about
2 minutes to start on 2 CPU cores: that test runs only with SKY_RAY_VLLM_ENGINE=1.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from sky_data.backends import Request, SamplingConfig, make_backend, request_seed
from sky_data.backends.ray import chat_payload, classify_reply, vllm_outcome, vllm_rows
from sky_data.fake_server import FakeServer, completion, serve


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray with 2 CPUs for this module, or a skip (a failure under SKY_REQUIRE_RAY=1)."""
    try:
        import ray
        import ray.data.llm  # noqa: F401
        import aiohttp  # noqa: F401 - Ray's HTTP stage needs it, and ray[data] does not bring it
    except Exception as e:  # noqa: BLE001 - a broken install should say so, not crash
        if os.environ.get("SKY_REQUIRE_RAY") == "1":
            pytest.fail(f"SKY_REQUIRE_RAY=1 but Ray Data's LLM API does not import: {type(e).__name__}: {e}")
        pytest.skip(f"Ray Data's LLM API does not import ({type(e).__name__}: {e}); pip install 'sky-recipe[ray]' "
                    "to run these, and set SKY_REQUIRE_RAY=1 to make this a failure")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def fake():
    with serve() as fake:
        yield fake


def backend(fake: FakeServer | list[FakeServer], **kw: Any):
    urls = [f.base_url for f in fake] if isinstance(fake, list) else fake.base_url
    kw = {"max_retries": 3, "backoff_s": 0.01, "timeout_s": 10.0, "batch_size": 4, **kw}
    return make_backend("ray", model="fake-model", base_url=urls, **kw)


def req(prompt: str) -> Request:
    return Request([{"role": "user", "content": prompt}], key=f"t:{prompt}")


def expected(prompt: str, n: int, seed: int = 0) -> list[str]:
    s = request_seed(seed, f"t:{prompt}")
    return [f"{prompt}#{s + i}" for i in range(n)]


# --- pure functions -------------------------------------------------------------------------------------------------

def test_the_payload_is_the_openai_backends_body():
    s = SamplingConfig(n=3, temperature=0.7, top_p=0.9, max_tokens=33, stop=("</s>",))
    body = chat_payload("m", req("q"), s, n=2, seed=11)
    assert body == {"model": "m", "messages": [{"role": "user", "content": "q"}], "n": 2, "temperature": 0.7,
                    "top_p": 0.9, "max_tokens": 33, "seed": 11, "stop": ["</s>"]}
    assert "stop" not in chat_payload("m", req("q"), SamplingConfig(), n=1, seed=0)


def _env(status: int, body: str = "", retry_after: str = "", error: str = "") -> dict:
    return {"status": status, "body": body, "retry_after": retry_after, "error": error}


def test_replies_are_classified_like_the_openai_backend_does():
    ok = '{"choices": [{"index": 1, "message": {"content": "b"}, "finish_reason": "length"}, ' \
         '{"index": 0, "message": {"content": "a"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 5}}'
    assert classify_reply(_env(200, ok), 2) == {"kind": "ok", "texts": ["a", "b"], "finish": ["stop", "length"],
                                                "tokens": [None, None], "prompt_tokens": 5}
    for env in (_env(200, "not json"), _env(200, '{"choices": []}'), _env(200, ok.replace('"a"', "null")),
                _env(200, error="the body is not UTF-8"), _env(0, error="connection error: reset"),
                _env(500, "boom"), _env(502), _env(429, "slow", "7"), _env(408), _env(409), _env(425)):
        out = classify_reply(env, 2)
        assert out["kind"] == "retry", env
    assert classify_reply(_env(429, "slow", "7"), 1)["retry_after"] == 7.0
    assert classify_reply(_env(503, "x", "Wed, 21 Oct 2015 07:28:00 GMT"), 1)["retry_after"] is None
    assert classify_reply(_env(200, ok), 1)["kind"] == "retry"  # more choices than asked
    for status in (400, 413, 422):
        out = classify_reply(_env(status, '{"error": "prompt too long"}'), 1)
        assert out["kind"] == "refused" and out["error"].startswith(f"HTTP {status}: ") and "too long" in out["error"]
    for status in (401, 403, 404, 405):
        assert classify_reply(_env(status, "no"), 1)["kind"] == "fatal"


def test_vllm_rows_give_each_sample_its_own_row_seeded_seed_plus_j():
    rows = vllm_rows([req("a"), req("b")], SamplingConfig(n=3, seed=5, temperature=0.6, max_tokens=9, stop=("x",)))
    assert [(r["c"], r["i"], r["j"]) for r in rows] == [(c, c // 3, c % 3) for c in range(6)]
    params = [json.loads(r["sampling"]) for r in rows]
    assert [p["seed"] for p in params[:3]] == [request_seed(5, "t:a") + j for j in range(3)]
    assert all(p["n"] == 1 and p["max_tokens"] == 9 and p["stop"] == ["x"] and p["temperature"] == 0.6 for p in params)
    assert json.loads(rows[3]["messages"]) == [{"role": "user", "content": "b"}]
    done = {"generated_text": "hi", "num_generated_tokens": 9, "num_input_tokens": 4}
    assert vllm_outcome(done, 9) == {"kind": "ok", "text": "hi", "tokens": 9, "prompt_tokens": 4, "finish": "length"}
    assert vllm_outcome({**done, "num_generated_tokens": 3}, 9)["finish"] == "stop"
    assert vllm_outcome({"generated_text": "hi"}, 9)["kind"] == "refused"


# --- through Ray Data, against the fake server ---------------------------------------------------------------------

def test_responses_are_seeded_per_request_in_order_sent_once_each_and_spread_over_the_urls(ray_local, monkeypatch):
    monkeypatch.setenv("SKY_TEST_KEY", "sk-secret")
    with serve() as a, serve() as b:
        ray_backend = backend([a, b], api_key_env="SKY_TEST_KEY")
        reqs = [req(f"q{i}") for i in range(8)]
        seen: list[int] = []
        gens = ray_backend.generate(reqs, SamplingConfig(n=2, seed=9, temperature=0.7, max_tokens=33),
                                    progress=False, on_result=lambda i, g: seen.append(i))
        assert [g.texts for g in gens] == [expected(f"q{i}", 2, seed=9) for i in range(8)]
        assert all(g.error is None and g.finish_reasons == ["stop", "stop"] and g.prompt_tokens == 7 for g in gens)
        assert sorted(seen) == list(range(8))  # once per request
        # request i goes to URL i mod 2, once
        assert sorted(c["messages"][0]["content"] for c in a.calls) == [f"q{i}" for i in range(0, 8, 2)]
        assert sorted(c["messages"][0]["content"] for c in b.calls) == [f"q{i}" for i in range(1, 8, 2)]
        by_content = a.by_content + b.by_content
        assert len(by_content) == 8 and set(by_content.values()) == {1}
        calls = a.calls + b.calls
        assert sorted(c["seed"] for c in calls) == sorted(request_seed(9, r.key) for r in reqs)
        assert all(c["n"] == 2 and c["model"] == "fake-model" and c["max_tokens"] == 33 for c in calls)
        assert set(a.auth + b.auth) == {"Bearer sk-secret"}
        info = ray_backend.info()
        assert "sk-secret" not in repr(info) + repr(ray_backend) + repr(ray_backend.http_config(a.base_url))
        assert info["engine"] == "ray-http" and info["base_urls"] == [a.base_url, b.base_url]
        ray_backend.close()
        assert ray_local.is_initialized()  # close() leaves a Ray it did not start


def one_choice(body: dict) -> tuple:
    status, payload, headers = completion(body)
    payload["choices"] = payload["choices"][:1]
    return status, payload, headers


FAULTS = {  # prompt -> its reply to the first attempt; every later attempt succeeds
    "f429": (429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
    "f500": (500, {"error": {"message": "boom"}}, {}),
    "f503-html": (503, b"<html>unavailable</html>", {"Content-Type": "text/html"}),
    "not-json": (200, b"this is not json", {}),
    "no-choices": (200, {"choices": []}, {}),
    "empty-object": (200, {}, {}),
    "content-null": (200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": None}}]}, {}),
    "dropped": "drop",
    "not-utf8": (200, b'{"choices": "\xff\xfe"}', {}),
}


def test_first_attempt_faults_are_retried_and_a_short_reply_is_completed_with_the_seed_moved_on(ray_local, fake):
    # one call, so one retry round serves them all (each Ray Data job costs seconds)
    def first_attempt_fails(body: dict, attempt: int):
        prompt = body["messages"][-1]["content"]
        if attempt == 1 and prompt == "short":
            return one_choice(body)  # 1 of the 2 choices asked: not a fault, the rest is asked for
        return FAULTS[prompt] if attempt == 1 and prompt in FAULTS else completion(body)

    fake.behave = first_attempt_fails
    prompts = [*FAULTS, "short", "fine"]
    seen: list[int] = []
    gens = backend(fake).generate([req(p) for p in prompts], SamplingConfig(n=2, seed=4), progress=False,
                                  on_result=lambda i, g: seen.append(i))
    assert [g.texts for g in gens] == [expected(p, 2, seed=4) for p in prompts]
    assert {p: fake.attempts[p] for p in prompts} == {**{p: 2 for p in FAULTS}, "short": 2, "fine": 1}
    s = request_seed(4, "t:short")
    assert [(c["n"], c["seed"]) for c in fake.calls if c["messages"][0]["content"] == "short"] == [(2, s), (1, s + 1)]
    assert sorted(seen) == list(range(len(prompts)))


def test_a_refused_request_is_recorded_and_the_others_succeed(ray_local, fake):
    fake.behave = lambda body, attempt: (400, {"error": {"message": "prompt too long"}}, {}) \
        if body["messages"][-1]["content"] == "long" else completion(body)
    seen: dict[int, Any] = {}
    gens = backend(fake, errors="record").generate([req("a"), req("long"), req("b")], SamplingConfig(n=2),
                                                   progress=False, on_result=lambda i, g: seen.setdefault(i, g))
    assert gens[0].texts == expected("a", 2) and gens[2].texts == expected("b", 2)
    assert gens[1].texts == [] and gens[1].error.startswith("HTTP 400") and "prompt too long" in gens[1].error
    assert seen[1] is gens[1] and len(seen) == 3
    assert fake.attempts["long"] == 1  # not retried


def test_a_bad_key_fails_at_once_even_when_errors_are_recorded(ray_local, fake):
    fake.behave = lambda body, attempt: (401, {"error": {"message": "invalid api key"}}, {})
    with pytest.raises(RuntimeError, match=r"request 't:q'.*HTTP 401.*invalid api key.*not retried"):
        backend(fake, errors="record").generate([req("q")], SamplingConfig(), progress=False)
    assert fake.attempts["q"] == 1


def test_a_server_that_keeps_failing_raises_naming_the_key_url_and_last_error(ray_local, fake):
    fake.behave = lambda body, attempt: (503, {"error": {"message": "still down"}}, {})
    with pytest.raises(RuntimeError, match=r"gave up after 2 attempts: 't:q'.*127\.0\.0\.1.*HTTP 503.*still down"):
        backend(fake, max_retries=1).generate([req("q")], SamplingConfig(), progress=False)
    assert fake.attempts["q"] == 2


def test_the_vllm_engine_config_runs_on_cpu_bundles_without_gpus(ray_local):
    b = make_backend("ray", model="/models/tiny", engine="vllm", concurrency=2, batch_size=8,
                     engine_kwargs={"max_model_len": 512, "dtype": "float32"})
    cfg = b.vllm_config(cpu_only=True)
    assert cfg.model_source == "/models/tiny" and cfg.concurrency == 2 and cfg.batch_size == 8
    assert cfg.engine_kwargs["max_model_len"] == 512 and cfg.engine_kwargs["tensor_parallel_size"] == 1
    assert cfg.should_continue_on_error and not cfg.log_engine_metrics
    assert [(b["CPU"], b.get("GPU", 0)) for b in cfg.placement_group_config["bundles"]] == [(1, 0)]
    assert b.vllm_config(cpu_only=False).placement_group_config is None
    assert b.info()["engine"] == "ray-vllm"


# --- the same seeded requests through a real vLLM server: Ray's HTTP path, and Ray's own vLLM engines -----------

VLLM_SAMPLING = SamplingConfig(n=2, temperature=1.0, max_tokens=12, seed=3)


def vllm_requests() -> list[Request]:
    return [Request([{"role": "user", "content": f"Count to {i}."}], key=f"v:{i}") for i in range(3)]


def test_ray_http_matches_the_openai_backend_on_a_real_vllm_server(ray_local, vllm_server):
    ours = make_backend("ray", model=vllm_server["model"], base_url=vllm_server["base_url"], batch_size=4)
    ref = make_backend("openai", model=vllm_server["model"], base_url=vllm_server["base_url"])
    got = ours.generate(vllm_requests(), VLLM_SAMPLING, progress=False)
    want = ref.generate(vllm_requests(), VLLM_SAMPLING, progress=False)
    assert [g.texts for g in got] == [g.texts for g in want]
    assert all(len(set(g.texts)) == 2 for g in got)  # sampled, each with its own seed
    assert [g.finish_reasons for g in got] == [g.finish_reasons for g in want]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SKY_RAY_VLLM_ENGINE") != "1",
                    reason="starts vLLM engines inside Ray (about 2 min on 2 CPU cores); SKY_RAY_VLLM_ENGINE=1 runs it")
def test_ray_vllm_engines_sample_what_the_vllm_server_samples(ray_local, vllm_server):
    # Ray's vLLM stage keeps one output per row, so each of the n samples is its own row seeded seed + j: the
    # server's n=2 request seeded s gives the same two texts
    ours = make_backend("ray", model=str(vllm_server["model_dir"]), engine="vllm", batch_size=8,
                        engine_kwargs={"dtype": "float32", "max_model_len": 512, "enforce_eager": True,
                                       "kv_cache_memory_bytes": 1 << 30})
    seen: list[int] = []
    got = ours.generate(vllm_requests(), VLLM_SAMPLING, progress=False, on_result=lambda i, g: seen.append(i))
    ref = make_backend("openai", model=vllm_server["model"], base_url=vllm_server["base_url"])
    want = ref.generate(vllm_requests(), VLLM_SAMPLING, progress=False)
    assert [g.texts for g in got] == [g.texts for g in want]
    assert [g.finish_reasons for g in got] == [g.finish_reasons for g in want]
    assert all(g.prompt_tokens and all(t for t in g.completion_tokens) for g in got)
    assert sorted(seen) == [0, 1, 2]
