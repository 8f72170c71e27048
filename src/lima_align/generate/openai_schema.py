"""The OpenAPI description of ``lima-align serve``: what :func:`~lima_align.generate.openai_api.parse_chat_request`
accepts, with the bounds of the server's :class:`ServerLimits`, and every status each route answers.

It is built, not served (``/openapi.json`` would be open without the API key): ``create_app(...).openapi()``
gives it, and the tests fuzz the running server with it (``schemathesis``). A request the schema allows may still
be refused (400) for what a schema cannot say: roles that do not alternate, a prompt longer than the context.
"""

from __future__ import annotations

from typing import Any

from lima_align.generate.openai_api import MAX_STOP, MAX_STOP_CHARS, ServerLimits

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
_WHY = {400: "an invalid request", 401: "a missing or wrong API key", 404: "no such model",
        413: "a body over the limit"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI clients send null for "not given": null means the default."""
    return {"anyOf": [schema, {"type": "null"}]}


def _range(kind: str, lo: float, hi: float, **extra: Any) -> dict[str, Any]:
    return _nullable({"type": kind, "minimum": lo, "maximum": hi, **extra})


def chat_request(limits: ServerLimits, model: str) -> dict[str, Any]:
    """The JSON schema of a chat completion request to a server serving ``model`` within ``limits``."""
    part = {"type": "object", "required": ["type", "text"],
            "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
    message = {"type": "object", "required": ["role", "content"], "properties": {
        "role": {"enum": ["system", "user", "assistant"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": part}]}}}
    tokens = _range("integer", 1, limits.max_tokens)
    stop = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}
    return {"type": "object", "required": ["model", "messages"], "properties": {
        "model": {"enum": [model]},
        "messages": {"type": "array", "minItems": 1, "items": message},
        "temperature": _range("number", *limits.temperature),
        "top_p": _nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
        "repetition_penalty": _range("number", *limits.repetition_penalty),
        "max_tokens": tokens, "max_completion_tokens": tokens,
        "n": _range("integer", 1, limits.max_n),
        "seed": _range("integer", -(1 << 63), (1 << 63) - 1),
        "stream": _nullable({"type": "boolean"}),
        "stream_options": _nullable({"type": "object", "properties": {"include_usage": {"type": "boolean"}}}),
        "logprobs": _nullable({"type": "boolean"}),
        "top_logprobs": _range("integer", 0, limits.max_top_logprobs),
        "stop": _nullable({"anyOf": [stop, {"type": "array", "maxItems": MAX_STOP, "items": stop}]})}}


def _logprob() -> dict[str, Any]:
    entry = {"type": "object", "required": ["token", "logprob", "bytes"],
             "properties": {"token": {"type": "string"}, "logprob": {"type": "number"},
                            "bytes": {"type": "array", "items": {"type": "integer"}}}}
    return {"anyOf": [{"type": "null"}, {"type": "object", "required": ["content"], "properties": {
        "content": {"type": "array", "items": {**entry, "properties": {
            **entry["properties"], "top_logprobs": {"type": "array", "items": entry}}}}}}]}


def chat_completion() -> dict[str, Any]:
    """The JSON schema of a (non-streaming) chat completion."""
    choice = {"type": "object", "required": ["index", "message", "finish_reason"], "properties": {
        "index": {"type": "integer"}, "finish_reason": {"enum": ["stop", "length"]}, "logprobs": _logprob(),
        "message": {"type": "object", "required": ["role", "content"],
                    "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}}}}}
    usage = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
             "properties": {k: {"type": "integer"} for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
    return {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"], "properties": {
        "id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": {"type": "integer"},
        "model": {"type": "string"}, "choices": {"type": "array", "items": choice}, "usage": usage}}


def responses(ok: dict[str, Any], errors: tuple[int, ...]) -> dict[int | str, Any]:
    """A route's ``responses=``: 200 with ``ok`` (media type -> schema) and the errors in OpenAI's shape."""
    out: dict[int | str, Any] = {200: {"description": "ok", "content": {m: {"schema": s} for m, s in ok.items()}}}
    for status in errors:
        out[status] = {"description": _WHY[status], "content": {"application/json": {"schema": ERROR}}}
    return out


def chat_route(limits: ServerLimits, model: str) -> dict[str, Any]:
    """The keyword arguments of the ``/v1/chat/completions`` route: its body and its answers."""
    return {"openapi_extra": {"requestBody": {"required": True, "content": {
                "application/json": {"schema": chat_request(limits, model)}}}},
            "responses": responses({"application/json": chat_completion(), "text/event-stream": SSE_EVENT},
                                   (400, 401, 404, 413))}


# one server-sent event: ``data`` is a chat.completion.chunk as JSON, an error, or "[DONE]"
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"},
                                                                    "event": {"type": "string"}}}


MODELS = {"type": "object", "required": ["object", "data"], "properties": {
    "object": {"const": "list"}, "data": {"type": "array", "items": {
        "type": "object", "required": ["id", "object"], "properties": {"id": {"type": "string"},
                                                                     "object": {"const": "model"}}}}}}
HEALTH = {"type": "object", "required": ["status", "model"], "properties": {"status": {"const": "ok"},
                                                                            "model": {"type": "string"}}}
