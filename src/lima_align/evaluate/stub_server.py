"""A scripted OpenAI-compatible server on 127.0.0.1: the local stand-in for a judge API in tests and benchmarks.

``respond(request_body, call_number) -> Action`` decides each answer: a completion text, an HTTP error status
(429, 500 ...), a delay (to provoke client timeouts) or a raw garbage body. Every request is counted.

``Action.logprobs`` ({token: logprob} of the first reply token) is answered, when the request asks for
``logprobs``, in OpenAI's shape and cut to the request's ``top_logprobs`` most likely tokens, as an endpoint
would: the local stand-in for a weighted (logprob) judge.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator


@dataclass
class Action:
    text: str = ""
    status: int = 200
    delay_s: float = 0.0
    raw: bytes | None = None  # sent as is instead of a completion (garbage)
    headers: dict[str, str] = field(default_factory=dict)
    logprobs: dict[str, float] | None = None  # the first reply token's distribution (its most likely tokens)


Responder = Callable[[dict[str, Any], int], Action]


def completion_body(text: str, model: str, prompt_tokens: int = 10, completion_tokens: int = 5,
                    logprobs: dict[str, Any] | None = None) -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return json.dumps({
        "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}}).encode()


def logprobs_body(first_token: dict[str, float], k: int) -> dict[str, Any]:
    """OpenAI's ``logprobs`` of a one-token reply: the most likely token, and the ``k`` most likely."""
    ranked = sorted(first_token.items(), key=lambda kv: kv[1], reverse=True)

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {"content": [{**entry(*ranked[0]), "top_logprobs": [entry(t, lp) for t, lp in ranked[:k]]}]}


class StubServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog (5) refuses connections under 32 concurrent clients

    def __init__(self, respond: Responder):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.respond = respond
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and closed its connection is expected here, not an error

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    @property
    def calls(self) -> int:
        return len(self.requests)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: without this, 40 ms per call
    server: StubServer

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.server.lock:
            self.server.requests.append(body)
            number = len(self.server.requests)
        action = self.server.respond(body, number)
        if action.delay_s:
            time.sleep(action.delay_s)
        if action.raw is not None:
            payload, ctype = action.raw, "application/json"
        elif action.status != 200:
            payload = json.dumps({"error": {"message": f"stub error {action.status}", "type": "stub"}}).encode()
            ctype = "application/json"
        else:
            payload, ctype = _completion(action, body), "application/json"
        try:
            self.send_response(action.status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(payload)))
            for key, value in action.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass


def _completion(action: Action, body: dict[str, Any]) -> bytes:
    logprobs = None
    if body.get("logprobs") and action.logprobs:
        logprobs = logprobs_body(action.logprobs, int(body.get("top_logprobs") or 0))
    text = action.text or (max(action.logprobs, key=action.logprobs.get) if logprobs else "")
    return completion_body(text, body.get("model", "stub"), logprobs=logprobs)


@contextlib.contextmanager
def stub_server(respond: Responder) -> Iterator[StubServer]:
    server = StubServer(respond)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
