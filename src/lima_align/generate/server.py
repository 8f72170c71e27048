"""An OpenAI-compatible HTTP server for a lima-align checkpoint: ``/v1/chat/completions`` (streaming or not),
``/v1/models`` and ``/health``. It is also the local stand-in for a judge API in the tests.

One background thread (:class:`~lima_align.generate.worker.BatchWorker`) owns the model. Requests are queued;
the worker waits a short window after the first one, groups what arrived by sampling settings, and decodes each
group as ONE batch through :meth:`HFEngine.generate` (static batching: requests arriving during a batch wait for
the next one). Tokens are streamed to each client as they are generated.

Choices made here:

* Sampling defaults are the paper's (or the server's ``defaults``); a request may override ``temperature``,
  ``top_p``, ``max_tokens``, ``seed``, ``n`` and ``repetition_penalty`` within :class:`ServerLimits`; out of
  range is a 400. ``stop`` (up to 4 strings) ends a reply before the first one its text holds (finish reason
  ``stop``; a stream holds back text that may begin one). Tools and frequency/presence penalties are not
  supported: a 400, never ignored.
* ``logprobs: true`` (+ ``top_logprobs: K``, K <= 20) returns OpenAI's ``choices[i].logprobs.content[j] =
  {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}`` for non-streaming requests (a streaming
  one asking for them is a 400). They are the model's own log-softmax at each step, before the repetition
  penalty, temperature and nucleus (:mod:`lima_align.generate.engine`): a judge reads its verdict from them.
* Messages must alternate user/assistant, starting and ending with the user (the training template has no
  other roles). A leading ``system`` message is REJECTED with a 400 by default (``system="reject"``): silently
  dropping a judge's instructions would change results without anyone noticing. ``system="ignore"`` drops it
  (its text is kept nowhere) for clients that always send one.
* Without ``seed`` a request gets a random one. With a seed, the text depends only on (seed, messages,
  settings), never on what else was in the batch: the worker passes the seed as the engine's request key
  (config seed 0).
* A client that disconnects mid-stream is marked cancelled: its rows leave the running batch at the next
  token (the engine's ``should_stop``), and a batch in which every request is cancelled is abandoned.
* Requests that differ only in ``max_tokens`` share a batch: each row carries its own cap.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at run time, and its
# Request type is imported lazily inside create_app (the "web" extra is optional).

import asyncio
import contextlib
import copy
import dataclasses
import hmac
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

from lima_align.chat_format import render
from lima_align.generate.decoding import SamplingConfig
from lima_align.generate.engine import Completion, TokenLogprob
from lima_align.generate import openai_schema as schema
from lima_align.generate.openai_api import ApiError, ChatParams, ServerLimits, parse_body, parse_chat_request
from lima_align.generate.worker import BatchWorker, Job
from lima_align.httpbody import BodyError, read_limited

FINISH = {"eot": "stop", "eos": "stop", "stop": "stop", "length": "length"}


# ------------------------------------------------------------------------------------------------------- app
@dataclass
class _Served:
    """What the handlers share."""

    engine: Any
    worker: BatchWorker
    name: str
    api_key: str | None
    defaults: SamplingConfig
    limits: ServerLimits
    count_tokenizer: Any  # a copy of the tokenizer for the event loop thread (the worker owns the original)
    created: int = field(default_factory=lambda: int(time.time()))

    def count_tokens(self, turns: list[str]) -> int:
        return len(render(turns, self.count_tokenizer, self.engine.fmt, add_generation_prompt=True).input_ids)

    def check_key(self, authorization: str | None) -> None:
        if self.api_key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        good = hmac.compare_digest(token.strip().encode(), self.api_key.encode())
        if scheme.lower() != "bearer" or not good:
            raise ApiError(401, "missing or incorrect API key (send 'Authorization: Bearer KEY')",
                           code="invalid_api_key")


def create_app(engine: Any, *, served_name: str = "lima-align", api_key: str | None = None,
               defaults: SamplingConfig = SamplingConfig(), limits: ServerLimits = ServerLimits(),
               window_s: float = 0.01) -> Any:
    """The FastAPI app serving ``engine`` (an :class:`HFEngine`) under the model name ``served_name``.

    The batch worker starts and stops with the app (its lifespan); ``app.state.served.worker`` exposes it.
    """
    from fastapi import FastAPI, Request as HttpRequest
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    served = _Served(engine, BatchWorker(engine, window_s=window_s), served_name, api_key, defaults, limits,
                     copy.deepcopy(engine.tokenizer))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        served.worker.start()
        yield
        served.worker.stop()

    # no /docs, /redoc, /openapi.json: they would be served without the API key (the API is OpenAI's; app.openapi()
    # gives our description of it, see openai_schema)
    app = FastAPI(title="lima-align", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served = served

    @app.exception_handler(ApiError)
    async def _api_error(_req: Any, exc: ApiError) -> Any:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http_error(_req: Any, exc: HTTPException) -> Any:
        return JSONResponse(ApiError(exc.status_code, str(exc.detail)).body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _bug(_req: Any, exc: Exception) -> Any:  # a 500 is a bug, but still answered in the API's shape
        error = ApiError(500, f"internal error: {type(exc).__name__}", type="server_error", code="internal_error")
        return JSONResponse(error.body(), status_code=500)

    @app.get("/health", responses=schema.responses({"application/json": schema.HEALTH}, ()))
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": served.name, "queued": served.worker.queue.qsize(),
                "worker": dataclasses.asdict(served.worker.stats)}

    @app.get("/v1/models", responses=schema.responses({"application/json": schema.MODELS}, (401,)))
    async def models(req: HttpRequest) -> dict[str, Any]:
        served.check_key(req.headers.get("authorization"))
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": served.created,
                                            "owned_by": "lima-align"}]}

    @app.post("/v1/chat/completions", **schema.chat_route(limits, served_name))
    async def chat_completions(req: HttpRequest) -> Any:
        served.check_key(req.headers.get("authorization"))
        return await _chat_completion(served, parse_body(await read_body(req, served.limits), served.limits))

    return app


async def read_body(req: Any, limits: ServerLimits) -> bytes:
    """The request body, refused (413) before it is read whole when it is over the limit."""
    try:
        return await read_limited(req, limits.max_body_bytes)
    except BodyError as exc:
        raise ApiError(exc.status, exc.message, code=exc.code) from None


async def _chat_completion(served: _Served, payload: dict) -> Any:
    from fastapi.responses import JSONResponse, StreamingResponse

    model = payload.get("model")
    if not isinstance(model, str):
        raise ApiError(400, "'model' is required", param="model")
    if model != served.name:
        raise ApiError(404, f"the model '{model}' does not exist; this server has '{served.name}'",
                       param="model", code="model_not_found")
    params = parse_chat_request(payload, count_tokens=served.count_tokens, context=served.engine.context,
                                defaults=served.defaults, limits=served.limits)
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    job = Job(params, lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev))
    served.worker.submit(job)
    reply = _Reply(served.name, params)
    if params.stream:
        return _job_stream(StreamingResponse, job, _sse(job, events, reply))
    try:
        while not reply.finished:
            reply.take(await events.get())
    finally:
        job.cancelled = True  # nothing more to deliver (or the handler was cancelled)
    if reply.error:
        raise ApiError(500, reply.error, type="server_error")
    return JSONResponse(reply.response())


@dataclass
class _Reply:
    """The choices of one request, filled from the worker's events."""

    model: str
    params: ChatParams
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    done: dict[int, Completion] = field(default_factory=dict)
    texts: dict[int, list[str]] = field(default_factory=dict)
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.error is not None or len(self.done) == self.params.n

    def take(self, event: tuple) -> None:
        if event[0] == "error":
            self.error = event[1]
        elif event[0] == "delta":
            self.texts.setdefault(event[1], []).append(event[2])
        elif event[2].finish_reason == "error":
            self.error = event[2].error
        else:
            self.done[event[1]] = event[2]

    def usage(self) -> dict[str, int]:
        completion = sum(c.completion_tokens for c in self.done.values())
        return {"prompt_tokens": self.params.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.params.prompt_tokens + completion}

    def response(self) -> dict[str, Any]:
        choices = [{"index": i, "message": {"role": "assistant", "content": c.text},
                    "logprobs": openai_logprobs(c.logprobs), "finish_reason": FINISH[c.finish_reason]}
                   for i, c in sorted(self.done.items())]
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": choices, "usage": self.usage(), "system_fingerprint": None}

    def chunk(self, choices: list[dict], usage: dict | None = None) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": choices, "system_fingerprint": None}
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def openai_logprobs(logprobs: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """A completion's logprobs in OpenAI's chat shape (``bytes``: the UTF-8 of the token's text)."""
    if logprobs is None:
        return None

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {"content": [{**entry(t.token, t.logprob), "top_logprobs": [entry(tok, lp) for tok, lp in t.top]}
                        for t in logprobs], "refusal": None}


def _delta(index: int, delta: dict, finish: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def _job_stream(base: type, job: Job, body: AsyncIterator[str]) -> Any:
    """A streaming response that marks ``job`` cancelled as soon as the response ends, however it ends.

    When the client goes away, the ASGI server makes ``send`` raise; the body generator is then left suspended
    and its ``finally`` would only run when it is garbage-collected, while the batch goes on generating for
    nobody. Marking the job here is immediate.
    """

    class JobStream(base):  # type: ignore[misc, valid-type]
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                job.cancelled = True

    return JobStream(body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _sse(job: Job, events: asyncio.Queue, reply: _Reply) -> AsyncIterator[str]:
    """Server-sent events: a role chunk per choice, content deltas, a finish chunk per choice, usage and
    ``[DONE]``."""
    try:
        yield reply.chunk([_delta(i, {"role": "assistant", "content": ""}) for i in range(reply.params.n)])
        while not reply.finished:
            event = await events.get()
            reply.take(event)
            if event[0] == "delta":
                yield reply.chunk([_delta(event[1], {"content": event[2]})])
            elif event[0] == "done" and event[1] in reply.done:
                yield reply.chunk([_delta(event[1], {}, FINISH[event[2].finish_reason])])
        if reply.error:
            yield f"data: {json.dumps(ApiError(500, reply.error, type='server_error').body())}\n\n"
        elif reply.params.include_usage:
            yield reply.chunk([], reply.usage())
        yield "data: [DONE]\n\n"
    finally:  # normal end, or the client went away (the generator is closed or cancelled)
        job.cancelled = True


# ------------------------------------------------------------------------------------------------ running it
@dataclass
class RunningServer:
    """A server started by :func:`serve_in_thread`: ``base_url`` is what an OpenAI client takes."""

    host: str
    port: int
    app: Any

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def worker(self) -> BatchWorker:
        return self.app.state.served.worker


@contextlib.contextmanager
def serve_in_thread(engine: Any, *, host: str = "127.0.0.1", port: int = 0, **app_options: Any
                    ) -> Iterator[RunningServer]:
    """Run :func:`create_app` with uvicorn in a background thread (``port=0``: a free port, bound before the
    server starts, so there is no race); stop it on exit. ``app_options`` go to :func:`create_app`."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    app = create_app(engine, **app_options)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="lima-align-uvicorn",
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        yield RunningServer(host, sock.getsockname()[1], app)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def serve(engine: Any, *, host: str = "127.0.0.1", port: int = 8000, **app_options: Any) -> None:
    """Serve in the foreground until interrupted (the ``lima-align serve`` command)."""
    import uvicorn

    uvicorn.run(create_app(engine, **app_options), host=host, port=port, log_level="info")
