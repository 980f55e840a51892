"""The OpenAI-compatible backend against a scripted fake server (`sky_data.fake_server`, on 127.0.0.1).

By default the fake server answers like a seeded vLLM: choice i of a request with `seed` s has the content
f"{prompt}#{s + i}", so a test can tell from the texts alone which seed produced each response.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from sky_data.backends import Request, SamplingConfig, make_backend, request_seed
from sky_data.backends.openai import MalformedReply, parse_reply
from sky_data.fake_server import FakeServer, completion, serve

@pytest.fixture
def fake():
    with serve() as fake:
        yield fake


def backend(fake: FakeServer, **kw: Any):
    kw = {"max_retries": 4, "backoff_s": 0.01, "timeout_s": 10.0, **kw}
    return make_backend("openai", model="fake-model", base_url=fake.base_url, **kw)


def req(prompt: str, key: str | None = None) -> Request:
    return Request([{"role": "user", "content": prompt}], key=key or f"t:{prompt}")


def expected(prompt: str, key: str, n: int, seed: int = 0) -> list[str]:
    s = request_seed(seed, key)
    return [f"{prompt}#{s + i}" for i in range(n)]


def test_seed_is_sent_per_request_and_responses_come_back_in_order(fake):
    reqs = [req(f"q{i}") for i in range(5)]
    gens = backend(fake).generate(reqs, SamplingConfig(n=2, seed=9, temperature=0.7, max_tokens=33), progress=False)
    assert [g.texts for g in gens] == [expected(r.messages[0]["content"], r.key, 2, seed=9) for r in reqs]
    body = fake.calls[0]
    assert body["n"] == 2 and body["temperature"] == 0.7 and body["max_tokens"] == 33 and body["model"] == "fake-model"
    assert sorted(c["seed"] for c in fake.calls) == sorted(request_seed(9, r.key) for r in reqs)


def test_send_seed_false_omits_it(fake):
    backend(fake, send_seed=False).generate([req("q")], SamplingConfig(), progress=False)
    assert "seed" not in fake.calls[0]


@pytest.mark.parametrize("fault", [
    (429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
    (500, {"error": {"message": "boom"}}, {}),
    (503, b"<html>unavailable</html>", {}),
    (200, b"this is not json", {}),
    (200, {"choices": []}, {}),
    (200, {"object": "chat.completion"}, {}),
    (200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": None}}]}, {}),
    (200, {"choices": [{"index": -1, "message": {"role": "assistant", "content": "x"}}]}, {}),
    (200, [1, 2, 3], {}),
    "drop",
], ids=["429", "500", "503-html", "not-json", "no-choices", "choices-missing", "content-null", "negative-index",
        "json-array", "dropped-connection"])
def test_passing_faults_are_retried(fake, fault):
    fake.behave = lambda body, attempt: fault if attempt <= 2 else completion(body)
    g = backend(fake).generate([req("q", "k:1")], SamplingConfig(n=2), progress=False)[0]
    assert g.texts == expected("q", "k:1", 2)
    assert fake.attempts["q"] == 3


def test_a_timeout_is_retried(fake):
    def slow_first(body: dict, attempt: int):
        if attempt == 1:
            time.sleep(1.5)
        return completion(body)

    fake.behave = slow_first
    g = backend(fake, timeout_s=0.5).generate([req("q", "k:1")], SamplingConfig(), progress=False)[0]
    assert g.texts == expected("q", "k:1", 1) and fake.attempts["q"] == 2


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_fail_fast_naming_key_and_status(fake, status):
    fake.behave = lambda body, attempt: (status, {"error": {"message": "model does not exist"}}, {})
    with pytest.raises(RuntimeError, match=rf"'aime:60'.*HTTP {status}.*not retried.*model does not exist"):
        backend(fake).generate([req("q", "aime:60")], SamplingConfig(), progress=False)
    assert fake.attempts["q"] == 1


def test_gives_up_after_max_retries_naming_the_key(fake):
    fake.behave = lambda body, attempt: (500, {"error": {"message": "down"}}, {})
    with pytest.raises(RuntimeError, match=r"'k:1': gave up after 3 attempts.*HTTP 500"):
        backend(fake, max_retries=2).generate([req("q", "k:1")], SamplingConfig(), progress=False)
    assert fake.attempts["q"] == 3


def test_one_failed_request_fails_the_call_and_cancels_the_rest(fake):
    fake.behave = lambda body, attempt: ((400, {"error": {"message": "bad"}}, {})
                                         if body["messages"][0]["content"] == "bad" else completion(body))
    fake.delay_s = 0.05
    with pytest.raises(RuntimeError, match="'t:bad'"):
        backend(fake, concurrency=2).generate([req("bad")] + [req(f"q{i}") for i in range(40)], SamplingConfig(),
                                              progress=False)
    time.sleep(0.3)
    assert len(fake.calls) < 41


def test_fewer_choices_than_n_are_topped_up_with_moved_seeds(fake):
    # a server that returns at most 2 choices per call, numbered from 0 each time
    fake.behave = lambda body, attempt: completion({**body, "n": min(body["n"], 2)})
    g = backend(fake).generate([req("q", "k:1")], SamplingConfig(n=5, seed=3), progress=False)[0]
    s = request_seed(3, "k:1")
    assert [c["n"] for c in fake.calls] == [5, 3, 1]
    assert [c["seed"] for c in fake.calls] == [s, s + 2, s + 4]
    # the same texts a server honouring n=5 would give: seeds s..s+4 in order
    assert g.texts == expected("q", "k:1", 5, seed=3)
    assert len(g.finish_reasons) == len(g.completion_tokens) == 5


def test_a_server_ignoring_n_is_asked_n_times(fake):
    fake.behave = lambda body, attempt: completion({**body, "n": 1})
    g = backend(fake).generate([req("q", "k:1")], SamplingConfig(n=3), progress=False)[0]
    assert g.texts == expected("q", "k:1", 3) and len(fake.calls) == 3


def test_choices_are_ordered_by_index(fake):
    def shuffled(body: dict, attempt: int):
        _, payload, _ = completion(body)
        payload["choices"].reverse()
        return 200, payload, {}

    fake.behave = shuffled
    g = backend(fake).generate([req("q", "k:1")], SamplingConfig(n=4), progress=False)[0]
    assert g.texts == expected("q", "k:1", 4)


MILLION = b'{"choices": [' + b",".join([b'{"index": 0, "message": {"content": "a"}}'] * 1_000_000) + b"]}"


def test_a_million_choices_are_refused_quickly():
    t = time.monotonic()
    with pytest.raises(MalformedReply, match="1000000 choices for n=2"):
        parse_reply(MILLION, 2)
    assert time.monotonic() - t < 10


@pytest.mark.parametrize("choices, reason", [
    ([{"index": 0, "message": {"content": "a"}}, {"index": 0, "message": {"content": "b"}}], "index 0"),
    ([{"index": 5, "message": {"content": "a"}}], "index 5"),
    ([{"index": "0", "message": {"content": "a"}}], "index '0'"),
    ([{"index": True, "message": {"content": "a"}}], "index True"),
    (["a"], "not an object"),
])
def test_untrustworthy_replies_are_malformed(choices, reason):
    body = json.dumps({"choices": choices}).encode()
    with pytest.raises(MalformedReply, match=reason):
        parse_reply(body, 2)


def test_a_server_that_keeps_replying_garbage_is_an_error_not_a_hang(fake):
    many = [{"index": i, "message": {"content": "a"}} for i in range(100_000)]
    fake.behave = lambda body, attempt: completion(body, choices=many)
    t = time.monotonic()
    with pytest.raises(RuntimeError, match=r"'k:1': gave up after 2 attempts.*100000 choices for n=1"):
        backend(fake, max_retries=1).generate([req("q", "k:1")], SamplingConfig(), progress=False)
    assert time.monotonic() - t < 20


def test_concurrency_bound_is_honoured_and_reached(fake):
    fake.delay_s = 0.1
    gens = backend(fake, concurrency=4).generate([req(f"q{i}") for i in range(20)], SamplingConfig(), progress=False)
    assert len(gens) == 20 and fake.max_in_flight == 4


def test_token_counts(fake):
    # one choice: usage.completion_tokens is that choice's count
    g = backend(fake).generate([req("q")], SamplingConfig(), progress=False)[0]
    assert g.prompt_tokens == 7 and g.completion_tokens == [3]
    # several choices without token_ids: per-choice counts are unknown, not guessed
    g = backend(fake).generate([req("r")], SamplingConfig(n=2), progress=False)[0]
    assert g.prompt_tokens == 7 and g.completion_tokens == [None, None]

    def with_ids(body: dict, attempt: int):
        choices = [{"index": i, "message": {"content": "x"}, "finish_reason": ["stop", "length"][i],
                    "token_ids": list(range(i + 4))} for i in range(2)]
        return completion(body, choices=choices, usage={"prompt_tokens": 11, "completion_tokens": 9})

    fake.behave = with_ids
    b = backend(fake, extra_body={"return_token_ids": True})
    g = b.generate([req("s")], SamplingConfig(n=2), progress=False)[0]
    assert g.completion_tokens == [4, 5] and g.finish_reasons == ["stop", "length"] and g.prompt_tokens == 11
    assert fake.calls[-1]["return_token_ids"] is True  # extra_body reaches the server


def test_stop_strings_are_sent_only_when_given(fake):
    backend(fake).generate([req("q")], SamplingConfig(stop=("</answer>",)), progress=False)
    backend(fake).generate([req("r")], SamplingConfig(), progress=False)
    assert fake.calls[0]["stop"] == ["</answer>"] and "stop" not in fake.calls[1]


def test_works_inside_a_running_event_loop(fake):
    async def caller():
        return backend(fake).generate([req("q", "k:1")], SamplingConfig(), progress=False)

    assert asyncio.run(caller())[0].texts == expected("q", "k:1", 1)


def test_api_key_from_argument_env_or_empty_and_never_in_info_or_errors(fake, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    backend(fake).generate([req("a")], SamplingConfig(), progress=False)
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    backend(fake, api_key_env="MY_KEY").generate([req("b")], SamplingConfig(), progress=False)
    b = backend(fake, api_key="sk-secret-argument")
    b.generate([req("c")], SamplingConfig(), progress=False)
    assert fake.auth == ["Bearer EMPTY", "Bearer sk-from-env", "Bearer sk-secret-argument"]
    fake.behave = lambda body, attempt: (401, {"error": {"message": "invalid key"}}, {})
    with pytest.raises(RuntimeError) as e:
        b.generate([req("d")], SamplingConfig(), progress=False)
    assert "sk-secret" not in str(e.value) and "sk-secret" not in repr(b) and "sk-secret" not in json.dumps(b.info())


def test_info_names_engine_server_and_model(fake):
    info = backend(fake).info()
    assert info["engine"] == "openai-compatible" and info["base_url"] == fake.base_url
    assert info["model"] == "fake-model" and info["seed_sent"] is True
    assert info["server"] == {"id": "fake-model", "root": "/models/fake", "owned_by": "test", "max_model_len": 512}


def test_empty_request_list_makes_no_call(fake):
    assert backend(fake).generate([], SamplingConfig(), progress=False) == [] and fake.calls == []
