"""The OpenAI-compatible backend against a scripted fake server (`sky_data.fake_server`, on 127.0.0.1).

By default the fake server answers like a seeded vLLM: choice i of a request with `seed` s has the content
f"{prompt}#{s + i}", so a test can tell from the texts alone which seed produced each response.
"""

from __future__ import annotations

import asyncio
import json
import threading
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
    kw = {"base_url": fake.base_url, "max_retries": 4, "backoff_s": 0.01, "timeout_s": 10.0, **kw}
    return make_backend("openai", model="fake-model", **kw)


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


# ---- on_result: streamed once per request, as replies arrive

def test_on_result_is_called_once_per_request_as_soon_as_it_is_answered(fake):
    fast_reported = threading.Event()
    waited: dict[str, bool] = {}

    def slow_waits_for_fast(body: dict, attempt: int):
        if body["messages"][0]["content"] == "slow":  # answered only once "fast" has been handed to on_result
            waited["slow"] = fast_reported.wait(timeout=10)
        return completion(body)

    seen: list[tuple[int, list[str], str]] = []

    def on_result(i: int, gen) -> None:
        seen.append((i, gen.texts, threading.current_thread().name))
        if gen.texts == expected("fast", "t:fast", 1):
            fast_reported.set()

    fake.behave = slow_waits_for_fast
    reqs = [req("slow")] + [req(f"q{i}") for i in range(8)] + [req("fast")]
    gens = backend(fake, concurrency=10).generate(reqs, SamplingConfig(), progress=False, on_result=on_result)
    assert waited == {"slow": True}
    order = [i for i, _, _ in seen]
    assert order.index(9) < order.index(0)  # "fast" (last in the list) was reported before "slow" (first)
    assert sorted(i for i, _, _ in seen) == list(range(len(reqs)))
    assert all(texts == gens[i].texts for i, texts, _ in seen)
    assert {name for _, _, name in seen} == {"openai-backend"}  # the backend's worker thread


def test_an_exception_in_on_result_fails_the_call(fake):
    def on_result(i: int, gen) -> None:
        if i == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        backend(fake).generate([req(f"q{i}") for i in range(6)], SamplingConfig(), progress=False,
                               on_result=on_result)


# ---- errors="record": a request refused for its own content does not fail the call

def refuse(prompt: str, status: int):
    return lambda body, attempt: ((status, {"error": {"message": "prompt is longer than max_model_len"}}, {})
                                  if body["messages"][0]["content"] == prompt else completion(body))


@pytest.mark.parametrize("status", [400, 413, 422])
def test_recorded_refusal_comes_back_as_an_error_and_the_others_are_answered(fake, status):
    fake.behave = refuse("q7", status)
    reqs = [req(f"q{i}") for i in range(20)]
    seen: dict[int, Any] = {}
    gens = backend(fake, errors="record", concurrency=4).generate(
        reqs, SamplingConfig(n=2), progress=False, on_result=lambda i, g: seen.setdefault(i, g))
    assert gens[7].texts == [] and gens[7].error == (f'HTTP {status}: {{"error": {{"message": '
                                                     f'"prompt is longer than max_model_len"}}}}')
    assert seen[7] is gens[7] and sorted(seen) == list(range(20))
    assert all(g.texts == expected(r.messages[0]["content"], r.key, 2) and g.error is None
               for r, g in zip(reqs, gens) if r.key != "t:q7")
    assert fake.attempts["q7"] == 1  # not retried


def test_a_refusal_after_a_partial_reply_drops_what_was_collected(fake):
    fake.behave = lambda body, attempt: (completion({**body, "n": 1}) if attempt == 1
                                         else (400, {"error": {"message": "too long"}}, {}))
    g = backend(fake, errors="record").generate([req("q")], SamplingConfig(n=3), progress=False)[0]
    assert g.texts == [] and g.error.startswith("HTTP 400") and len(fake.calls) == 2


@pytest.mark.parametrize("status", [401, 403, 404])
def test_recording_errors_still_fails_the_call_on_faults_every_request_would_hit(fake, status):
    fake.behave = lambda body, attempt: (status, {"error": {"message": "invalid key"}}, {})
    with pytest.raises(RuntimeError, match=rf"'t:q0'.*HTTP {status}.*not retried"):
        backend(fake, errors="record").generate([req("q0")], SamplingConfig(), progress=False)


def test_recording_errors_still_fails_the_call_when_retries_run_out(fake):
    fake.behave = lambda body, attempt: (500, {"error": {"message": "down"}}, {})
    with pytest.raises(RuntimeError, match=r"'k:1': gave up after 2 attempts.*HTTP 500"):
        backend(fake, errors="record", max_retries=1).generate([req("q", "k:1")], SamplingConfig(), progress=False)


def test_bad_constructor_arguments_are_refused(fake):
    for kw, match in [({"errors": "ignore"}, "errors must be one of raise, record"),
                      ({"base_url": []}, "non-empty list"),
                      ({"base_url": [fake.base_url, fake.base_url]}, "more than once")]:
        with pytest.raises(ValueError, match=match):
            backend(fake, **kw)


# ---- replicas: base_url as a list

@pytest.fixture
def fake2():
    with serve() as fake2:
        yield fake2


def replicas(*fakes: FakeServer, **kw: Any):
    return backend(fakes[0], base_url=[f.base_url for f in fakes], **kw)


def test_replicas_share_the_load_under_one_total_concurrency_bound(fake, fake2):
    lock, now, peak = threading.Lock(), [0], [0]  # requests in flight over both servers

    def counted(body: dict, attempt: int):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.1)
        with lock:
            now[0] -= 1
        return completion(body)

    fake.behave = fake2.behave = counted
    reqs = [req(f"q{i}") for i in range(24)]
    gens = replicas(fake, fake2, concurrency=4).generate(reqs, SamplingConfig(), progress=False)
    assert [g.texts for g in gens] == [expected(r.messages[0]["content"], r.key, 1) for r in reqs]
    assert peak[0] == 4  # the bound is over all replicas, and it is reached
    assert len(fake.calls) + len(fake2.calls) == 24 and fake.calls and fake2.calls
    assert fake.max_in_flight <= 2 and fake2.max_in_flight <= 2  # each call goes to the less busy replica


def test_a_replica_that_always_fails_is_routed_around(fake, fake2):
    fake.behave = lambda body, attempt: (500, {"error": {"message": "down"}}, {})
    reqs = [req(f"q{i}") for i in range(12)]
    # one retry only: it must go to the other replica for every request to succeed
    gens = replicas(fake, fake2, concurrency=4, max_retries=1).generate(reqs, SamplingConfig(), progress=False)
    assert [g.texts for g in gens] == [expected(r.messages[0]["content"], r.key, 1) for r in reqs]
    assert fake.calls and max(fake.attempts.values()) == 1 and len(fake2.calls) == 12


def test_a_dead_replica_is_tried_ever_less_often(fake, fake2):
    fake.behave = lambda body, attempt: (500, {"error": {"message": "down"}}, {})
    fake2.delay_s = 0.05
    reqs = [req(f"q{i}") for i in range(40)]
    # its cooling time doubles with each fault: 0.2, 0.4, 0.8 s...; about 6 tries in 10 s, where a fixed 0.2 s makes 50
    replicas(fake, fake2, concurrency=4, max_retries=1, backoff_s=0.2).generate(reqs, SamplingConfig(), progress=False)
    assert 1 <= len(fake.calls) <= 12 and len(fake2.calls) == 40


def test_a_replica_found_dead_stays_avoided_in_the_next_call(fake, fake2):
    fake.behave = lambda body, attempt: (500, {"error": {"message": "down"}}, {})
    b = replicas(fake, fake2, max_retries=1, backoff_s=30.0)  # cools for 30 s after its fault: the whole test
    assert b.generate([req("q")], SamplingConfig(), progress=False)[0].texts == expected("q", "t:q", 1)
    assert len(fake.calls) == 1 and len(fake2.calls) == 1  # tried first (round robin), then routed around at once
    b.generate([req(f"r{i}") for i in range(4)], SamplingConfig(), progress=False)
    assert len(fake.calls) == 1 and len(fake2.calls) == 5


def test_giving_up_names_every_replica_tried(fake, fake2):
    fake.behave = fake2.behave = lambda body, attempt: (503, {"error": {"message": "down"}}, {})
    with pytest.raises(RuntimeError, match="gave up after 3 attempts") as e:
        replicas(fake, fake2, max_retries=2).generate([req("q", "k:1")], SamplingConfig(), progress=False)
    assert fake.base_url in str(e.value) and fake2.base_url in str(e.value)
    assert fake.attempts["q"] >= 1 and fake2.attempts["q"] >= 1


def test_info_and_repr_list_every_replica(fake, fake2):
    b = replicas(fake, fake2)
    info = b.info()
    assert info["base_url"] == [fake.base_url, fake2.base_url] and len(info["server"]) == 2
    assert info["server"][1]["id"] == "fake-model" and info["errors"] == "raise"
    assert fake.base_url in repr(b) and fake2.base_url in repr(b)


# ---- billed tokens

def test_total_completion_tokens_keeps_the_usage_of_multi_choice_replies(fake):
    g = backend(fake).generate([req("q")], SamplingConfig(n=2), progress=False)[0]
    assert g.completion_tokens == [None, None] and g.total_completion_tokens == 6  # usage: 3 per choice
    # topped up over three calls (2 + 2 + 1 choices): the calls' usages add up
    fake.behave = lambda body, attempt: completion({**body, "n": min(body["n"], 2)})
    g = backend(fake).generate([req("r")], SamplingConfig(n=5), progress=False)[0]
    assert g.total_completion_tokens == 15
    # a reply without usage: unknown
    fake.behave = lambda body, attempt: (200, {"choices": completion(body)[1]["choices"]}, {})
    g = backend(fake).generate([req("s")], SamplingConfig(n=2), progress=False)[0]
    assert g.total_completion_tokens is None and g.prompt_tokens is None
