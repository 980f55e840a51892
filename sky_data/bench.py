"""Throughput of the `openai` backend: the same requests one at a time (the baseline), then `--concurrency` at a time.

    python -m sky_data.bench                                   # 200 requests, K=32: about a minute on 2 cores
    python -m sky_data.bench --requests 500 --concurrency 64 --replicas 2 --json bench.json

The teacher is `sky_data.fake_server` on 127.0.0.1 with a model-like latency: `--latency-s` for every request
(queueing, prefill) plus `--token-s` for each generated token, replies being 50 to 250 tokens long (fixed per
prompt and seed): 0.2 s a request on average by default. Real teacher replies take tens of seconds; the times
are scaled down so that the baseline fits in a minute, which makes the client's own overhead weigh more than it
would against a real server. The server answers each request in its own thread, so concurrent requests wait out
their latencies side by side. Both runs send the same requests (n=1, distinct prompts, seeded) and must get the
same texts back. `--replicas R` starts R servers and hands the backend their URLs.

What the figure means: client-side throughput (requests/s) bound by server latency. One request at a time, the
backend waits out every latency in turn; K at a time, it waits them out K together, so the speed-up approaches K,
less the client's overhead and the tail of the last requests. Goal: >= 8x. A real vLLM server batches the
concurrent requests on its GPU, and each gets slower as the batch grows, so real gains depend on the server (its
max_num_seqs, KV-cache room, model size): measure against it with the same backend settings.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sky_data.backends import Generation, Request, SamplingConfig, make_backend, request_seed
from sky_data.fake_server import FakeServer, completion, serve

GOAL = 8.0  # speed-up of K in flight over one at a time
SAMPLING = SamplingConfig(n=1, temperature=0.7, max_tokens=256, seed=0)
MIN_TOKENS, MAX_TOKENS = 50, 250  # reply lengths, uniform over prompts


def reply_tokens(prompt: str, seed: int) -> int:
    """The length in tokens of the fake teacher's reply to (prompt, seed): fixed, so both runs get the same."""
    h = int.from_bytes(hashlib.sha256(f"{prompt}\x00{seed}".encode()).digest()[:4], "little")
    return MIN_TOKENS + h % (MAX_TOKENS - MIN_TOKENS + 1)


def teacher_reply(body: dict, attempt: int) -> tuple[int, dict, dict]:
    """A FakeServer behaviour: choice i is f"{prompt}#{seed + i}" and then as many words as its token count."""
    prompt, seed = body["messages"][-1]["content"], body.get("seed", 0)
    choices, total = [], 0
    for i in range(body.get("n", 1)):
        k = reply_tokens(prompt, seed + i)
        words = " ".join(f"w{(seed + j) % 997}" for j in range(k - 1))
        choices.append({"index": i, "message": {"role": "assistant", "content": f"{prompt}#{seed + i} {words}"},
                        "finish_reason": "stop"})
        total += k
    return completion(body, choices=choices, usage={"prompt_tokens": 16, "completion_tokens": total})


def bench_requests(count: int, tag: str = "bench") -> list[Request]:
    return [Request([{"role": "user", "content": f"Problem {i}: how many primes are below {1000 + i}?"}],
                    key=f"{tag}:{i}") for i in range(count)]


def timed_run(urls: list[str], requests: list[Request], concurrency: int) -> tuple[list[Generation], float]:
    backend = make_backend("openai", model="fake-model", base_url=urls if len(urls) > 1 else urls[0],
                           concurrency=concurrency, max_retries=0, timeout_s=60.0)
    start = time.perf_counter()
    gens = backend.generate(requests, SAMPLING, progress=False)
    return gens, time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m sky_data.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="requests per run (n=1 each, distinct prompts)")
    ap.add_argument("--concurrency", type=int, default=32, help="K: requests in flight in the second run")
    ap.add_argument("--latency-s", type=float, default=0.05, help="server latency of every request")
    ap.add_argument("--token-s", type=float, default=0.001, help="server latency per generated token")
    ap.add_argument("--replicas", type=int, default=1, help="fake servers the backend spreads requests over")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.replicas < 1:
        ap.error("--requests, --concurrency and --replicas must be >= 1")
    if args.latency_s < 0 or args.token_s < 0:
        ap.error("--latency-s and --token-s must be >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import openai

    requests = bench_requests(args.requests)
    tokens = [reply_tokens(r.messages[-1]["content"], request_seed(SAMPLING.seed, r.key)) for r in requests]
    mean_latency = args.latency_s + args.token_s * sum(tokens) / len(tokens)
    print(f"sky_data.bench: openai backend against {args.replicas} sky_data.fake_server(s), {args.requests} "
          f"requests (n=1), latency {args.latency_s} s + {args.token_s} s/token, {MIN_TOKENS}-{MAX_TOKENS} tokens "
          f"(mean {mean_latency:.3f} s a request)", flush=True)
    runs, texts = [], []
    for k in (1, args.concurrency):
        with contextlib.ExitStack() as stack:  # fresh servers for each run: their counters are that run's
            fakes: list[FakeServer] = [stack.enter_context(serve()) for _ in range(args.replicas)]
            for fake in fakes:
                fake.behave = teacher_reply
            urls = [f.base_url for f in fakes]
            timed_run(urls, bench_requests(2, tag="warmup"), 2)  # connections, threads: not timed
            for fake in fakes:
                fake.delay_s, fake.token_delay_s, fake.max_in_flight = args.latency_s, args.token_s, 0
            before = [len(f.calls) for f in fakes]
            gens, seconds = timed_run(urls, requests, k)
            in_flight = [f.max_in_flight for f in fakes]
            calls = [len(f.calls) - b for f, b in zip(fakes, before)]
        texts.append([g.texts for g in gens])
        runs.append({"concurrency": k, "seconds": seconds, "requests_per_s": args.requests / seconds,
                     "server_max_in_flight": in_flight, "calls_per_replica": calls})
        print(f"  concurrency {k:4d}: {seconds:8.2f} s  {args.requests / seconds:9.2f} requests/s  "
              f"(most in flight at a server: {max(in_flight)})", flush=True)
    speedup = runs[1]["requests_per_s"] / runs[0]["requests_per_s"]
    identical = texts[0] == texts[1] and all(len(t) == SAMPLING.n for t in texts[0])
    print(f"  speed-up: {speedup:.1f}x (goal >= {GOAL:g}x: {'met' if speedup >= GOAL else 'NOT met'}); "
          f"texts identical in both runs: {'yes' if identical else 'NO'}", flush=True)
    result = {"requests": args.requests, "n": SAMPLING.n, "replicas": args.replicas,
              "server": {"latency_s": args.latency_s, "token_s": args.token_s,
                         "reply_tokens": [MIN_TOKENS, MAX_TOKENS], "mean_latency_s": mean_latency},
              "runs": runs, "speedup": speedup, "goal": GOAL, "goal_met": speedup >= GOAL,
              "texts_identical": identical, "openai": openai.__version__, "cpus": os.cpu_count()}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(args.json)
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["texts_identical"] else 1)
