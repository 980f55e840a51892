"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks (stdlib only, threaded).

    from sky_data.fake_server import serve, completion
    with serve() as fake:                       # fake.base_url = "http://127.0.0.1:PORT/v1"
        fake.delay_s = 0.2                      # latency of every reply
        fake.token_delay_s = 0.001              # and per completion token of a 200 reply (its usage)
        fake.behave = lambda body, attempt: (500, {"error": {"message": "down"}}, {}) if attempt < 2 \
            else completion(body)
        ...
    fake.calls, fake.attempts, fake.max_in_flight   # what the server saw

By default it answers like a seeded vLLM: choice i of a request with `seed` s has the content
f"{prompt}#{s + i}" (prompt: the last message's content), so a caller can tell from the texts which seed made
each response. `behave(body, attempt)` returns `(status, payload, headers)` (payload: a JSON-able value or raw
bytes) or "drop" (close the connection without a reply); `attempt` counts the requests with the same prompt.
Latency: `delay_s` before every reply (queueing and prefill), then, for a reply that carries
`usage.completion_tokens`, `token_delay_s` per token (decoding, all choices one after another). The server is a
ThreadingHTTPServer: concurrent requests wait out their latencies side by side, as on a server with room to
batch them all.
`python -m sky_data.fake_server --port P --delay-s D --token-delay-s T` runs one in the foreground (a stand-in
teacher).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeServer", "completion", "content_key", "serve"]

Behaviour = Callable[[dict, int], Any]  # (request body, attempt number for this prompt) -> reply


def completion(body: dict, choices: list[dict] | None = None, usage: dict | None = None) -> tuple[int, dict, dict]:
    """A 200 chat completion for `body`: by default n choices f"{prompt}#{seed + i}"."""
    prompt = body["messages"][-1]["content"]
    seed = body.get("seed", 0)
    if choices is None:
        choices = [{"index": i, "message": {"role": "assistant", "content": f"{prompt}#{seed + i}"},
                    "finish_reason": "stop"} for i in range(body.get("n", 1))]
    usage = usage or {"prompt_tokens": 7, "completion_tokens": 3 * len(choices)}
    return 200, {"id": "x", "object": "chat.completion", "choices": choices, "usage": usage}, {}


def content_key(body: dict) -> str:
    """A digest of what a request asks (messages and sampling, not the model name): equal requests, equal keys."""
    keep = {k: body.get(k) for k in ("messages", "n", "seed", "temperature", "top_p", "max_tokens", "stop")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


class FakeServer:
    def __init__(self) -> None:
        self.behave: Behaviour = lambda body, attempt: completion(body)
        self.delay_s = 0.0
        self.token_delay_s = 0.0
        self.calls: list[dict] = []
        self.auth: list[str] = []
        self.attempts: Counter = Counter()  # requests per prompt
        self.by_content: Counter = Counter()  # requests per content_key(body)
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.base_url = ""
        self.models: list[dict] = [{"id": "fake-model", "object": "model", "owned_by": "test",
                                    "root": "/models/fake", "max_model_len": 512}]

    def handle(self, body: dict, auth: str) -> Any:
        prompt = body["messages"][-1]["content"] if body.get("messages") else ""
        with self.lock:
            self.calls.append(body)
            self.auth.append(auth)
            self.attempts[prompt] += 1
            self.by_content[content_key(body)] += 1
            attempt = self.attempts[prompt]
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay_s)
            result = self.behave(body, attempt)
            if self.token_delay_s:
                time.sleep(self.token_delay_s * _completion_tokens(result))
            return result
        finally:
            with self.lock:  # before the reply is written, so the client cannot start its next call first
                self.in_flight -= 1


def _completion_tokens(result: Any) -> int:
    """usage.completion_tokens of a behaviour's reply; 0 for anything else (an error, a drop, raw bytes)."""
    if not isinstance(result, tuple) or len(result) != 3 or not isinstance(result[1], dict):
        return 0
    usage = result[1].get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and tokens > 0 else 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a benchmark opens many connections at once; listen() reads it in __init__

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away (cancelled): not news
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # a reply leaves in one segment, at once: headers and body sent apart, with Nagle on, wait out the client's
    # delayed ACK (40 ms a request on Linux)
    disable_nagle_algorithm = True
    wbufsize = -1  # buffered: http.server flushes after each request

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        result = self.server.fake.handle(body, self.headers.get("Authorization", ""))
        if result == "drop":
            self.close_connection = True  # no reply at all: the client sees the connection end
            return
        status, payload, headers = result
        self.reply(status, payload, headers)

    def do_GET(self) -> None:  # noqa: N802
        self.reply(200, {"object": "list", "data": self.server.fake.models}, {})

    def reply(self, status: int, payload: Any, headers: dict) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(fake: FakeServer | None = None, port: int = 0) -> Iterator[FakeServer]:
    """Run `fake` (a new FakeServer by default) on 127.0.0.1:`port` (0: any free port) until the block ends."""
    fake = fake or FakeServer()
    httpd = _Server(("127.0.0.1", port), _Handler)
    httpd.fake = fake
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--delay-s", type=float, default=0.0, help="latency of every reply")
    parser.add_argument("--token-delay-s", type=float, default=0.0, help="latency per completion token")
    args = parser.parse_args()
    with serve(port=args.port) as fake:
        fake.delay_s = args.delay_s
        fake.token_delay_s = args.token_delay_s
        print(f"serving on {fake.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
