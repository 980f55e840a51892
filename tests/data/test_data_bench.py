"""The openai backend's throughput benchmark (sky_data.bench), run in-process at a tiny size: the results it
reports and writes, not its timings (those depend on the machine)."""

from __future__ import annotations

import json

import pytest

from sky_data.bench import bench_requests, main, parse_args, reply_tokens, teacher_reply


def test_the_benchmark_runs_both_settings_on_the_same_requests_and_gets_the_same_texts(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = main(["--requests", "24", "--latency-s", "0.05", "--token-s", "0.0001", "--concurrency", "8",
                   "--replicas", "2", "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["texts_identical"] is True and result["requests"] == 24 and result["replicas"] == 2
    base, fast = result["runs"]
    assert (base["concurrency"], fast["concurrency"]) == (1, 8)
    assert base["server_max_in_flight"] == [1, 1]  # the baseline really is one request at a time
    assert all(m <= 8 for m in fast["server_max_in_flight"])
    assert sum(base["calls_per_replica"]) == sum(fast["calls_per_replica"]) == 24  # no retries, no warm-up
    assert all(c > 0 for c in fast["calls_per_replica"])  # both replicas served
    assert result["speedup"] == pytest.approx(fast["requests_per_s"] / base["requests_per_s"])
    assert result["goal_met"] == (result["speedup"] >= result["goal"])
    printed = capsys.readouterr().out
    assert "concurrency    1:" in printed and "concurrency    8:" in printed and "speed-up:" in printed


def test_the_fake_teacher_is_deterministic_and_its_latency_follows_the_reply_length():
    body = {"messages": bench_requests(1)[0].messages, "n": 2, "seed": 5}
    status, payload, _ = teacher_reply(body, 1)
    assert status == 200 and payload == teacher_reply(body, 7)[1]
    prompt = body["messages"][-1]["content"]
    lengths = [reply_tokens(prompt, 5), reply_tokens(prompt, 6)]
    assert payload["usage"]["completion_tokens"] == sum(lengths)
    # after the prompt: "#seed" and then a word a token
    assert [len(c["message"]["content"][len(prompt):].split()) for c in payload["choices"]] == lengths
    assert payload["choices"][1]["message"]["content"].startswith(f"{prompt}#6 ")


def test_bad_arguments_exit_2(capsys):
    for bad in (["--requests", "0"], ["--concurrency", "0"], ["--latency-s", "-1"], ["--replicas", "0"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(bad)
        assert exc.value.code == 2
    assert parse_args([]).requests == 200 and parse_args([]).concurrency == 32
