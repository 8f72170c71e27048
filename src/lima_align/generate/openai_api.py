"""The OpenAI chat-completions request format: parsing and validation into what the engine needs.

Every problem is an :class:`ApiError` carrying the HTTP status and OpenAI's error shape, so the server answers
4xx instead of failing. Bounds on sampling settings live in :class:`ServerLimits`.
"""

import math
import secrets
from dataclasses import dataclass
from typing import Any, Callable

from lima_align.generate.decoding import SamplingConfig
from lima_align.httpbody import BodyError, strict_json

UNSUPPORTED = ("tools", "functions", "tool_choice", "logit_bias")
MAX_STOP = 4  # OpenAI's bound on stop strings
MAX_STOP_CHARS = 256  # each; the engine decodes a stop string's length in tokens at every step


@dataclass(frozen=True)
class ServerLimits:
    """What a request may ask for. ``max_context`` caps prompt + max_tokens (None: the model's context)."""

    max_tokens: int = 2048
    max_context: int | None = None
    max_n: int = 8
    max_body_bytes: int = 1 << 20
    temperature: tuple[float, float] = (0.0, 2.0)
    repetition_penalty: tuple[float, float] = (1.0, 2.0)
    system: str = "reject"  # or "ignore"
    max_top_logprobs: int = 20  # OpenAI's bound


class ApiError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# ------------------------------------------------------------------------------------------- request parsing
@dataclass
class ChatParams:
    """A validated chat completion request."""

    turns: list[str]
    config: SamplingConfig  # seed 0: the request's seed travels as the engine key (see module docstring)
    seed: int
    n: int
    stream: bool
    include_usage: bool
    prompt_tokens: int
    top_logprobs: int | None = None  # None: no logprobs asked; K: the sampled token's and the K most likely
    stop: tuple[str, ...] = ()  # the reply ends before the first of these (finish reason "stop")


def _number(payload: dict, name: str, default: float, lo: float, hi: float, *,
            lo_open: bool = False) -> float:
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, f"'{name}' must be a number", param=name, code="invalid_type")
    if not math.isfinite(value):
        raise ApiError(400, f"'{name}' must be a finite number, got {value}", param=name, code="invalid_value")
    if value > hi or value < lo or (lo_open and value == lo):
        bracket = "(" if lo_open else "["
        raise ApiError(400, f"'{name}' must be in {bracket}{lo}, {hi}], got {value}", param=name,
                       code="invalid_value")
    return float(value)


def _integer(payload: dict, name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"'{name}' must be an integer", param=name, code="invalid_type")
    if not lo <= value <= hi:
        raise ApiError(400, f"'{name}' must be in [{lo}, {hi}], got {value}", param=name,
                       code="invalid_value")
    return value


def _content(message: Any, i: int) -> tuple[str, str]:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise ApiError(400, f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]")
    content = message.get("content")
    if isinstance(content, list):  # content parts: text only
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise ApiError(400, f"messages[{i}].content: only text parts are supported",
                           param=f"messages[{i}].content")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise ApiError(400, f"messages[{i}].content must be a string", param=f"messages[{i}].content")
    return message["role"], content


def parse_turns(messages: Any, system: str = "reject") -> list[str]:
    """OpenAI messages -> alternating turns (user first, user last), the only shape the template has."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages")
    pairs = [_content(m, i) for i, m in enumerate(messages)]
    if pairs[0][0] == "system":
        if system != "ignore":
            raise ApiError(400, "system messages are not supported: the LIMA chat template has only user and "
                                "assistant turns; put the instructions in the first user message",
                           param="messages[0].role", code="unsupported_role")
        pairs = pairs[1:]
    for i, (role, _) in enumerate(pairs):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise ApiError(400, f"messages must alternate user/assistant starting with user; message {i} "
                                f"(after any leading system message) has role '{role}', expected "
                                f"'{expected}'",
                           param="messages", code="invalid_roles")
    if len(pairs) % 2 == 0:
        raise ApiError(400, "the last message must be the user's", param="messages", code="invalid_roles")
    return [text for _, text in pairs]


def parse_body(raw: bytes, limits: ServerLimits) -> dict[str, Any]:
    if len(raw) > limits.max_body_bytes:
        raise ApiError(413, f"request body over {limits.max_body_bytes} bytes", code="body_too_large")
    try:
        payload = strict_json(raw)
    except BodyError as exc:
        raise ApiError(exc.status, exc.message, code=exc.code) from None
    if not isinstance(payload, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    return payload


def _check_unsupported(payload: dict) -> None:
    for name in UNSUPPORTED:
        if payload.get(name):
            raise ApiError(400, f"'{name}' is not supported by this server", param=name, code="unsupported")
    for name in ("frequency_penalty", "presence_penalty"):
        if payload.get(name):
            raise ApiError(400, f"'{name}' is not supported; use 'repetition_penalty' (LIMA: 1.2 on "
                                f"generated tokens)", param=name, code="unsupported")


def parse_sampling(payload: dict, defaults: SamplingConfig, limits: ServerLimits,
                   room: int) -> SamplingConfig:
    """Per-request overrides of ``defaults`` within ``limits``; ``room`` = context left after the prompt."""
    cap = min(limits.max_tokens, room)
    default_max = min(defaults.max_new_tokens, cap)
    asked = {}  # max_completion_tokens is OpenAI's new name; when both are sent, both must be valid
    for name in ("max_tokens", "max_completion_tokens"):
        asked[name] = _integer(payload, name, None, 1, 1 << 31)
        if asked[name] is not None and asked[name] > limits.max_tokens:
            raise ApiError(400, f"{name} {asked[name]} is over this server's cap of {limits.max_tokens}",
                           param=name, code="invalid_value")
    requested = asked["max_completion_tokens"] if asked["max_completion_tokens"] is not None else asked["max_tokens"]
    max_tokens = default_max if requested is None else requested
    if max_tokens > room or default_max < 1:
        raise ApiError(400, f"the prompt plus max_tokens ({max_tokens}) is over the context length: only "
                            f"{max(room, 0)} tokens are left after the prompt", param="messages",
                       code="context_length_exceeded")
    return SamplingConfig(
        temperature=_number(payload, "temperature", defaults.temperature, *limits.temperature),
        top_p=_number(payload, "top_p", defaults.top_p, 0.0, 1.0, lo_open=True),
        repetition_penalty=_number(payload, "repetition_penalty", defaults.repetition_penalty,
                                   *limits.repetition_penalty),
        penalty_scope=defaults.penalty_scope, max_new_tokens=max_tokens, seed=0)


def parse_stop(payload: dict) -> tuple[str, ...]:
    """``stop``: null, one string, or a list of up to 4 (empty list: none), each 1-256 characters."""
    stop = payload.get("stop")
    if stop is None:
        return ()
    strings = [stop] if isinstance(stop, str) else stop
    if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
        raise ApiError(400, "'stop' must be a string or a list of strings", param="stop", code="invalid_type")
    if len(strings) > MAX_STOP or not all(1 <= len(s) <= MAX_STOP_CHARS for s in strings):
        raise ApiError(400, f"'stop' takes at most {MAX_STOP} strings of 1-{MAX_STOP_CHARS} characters",
                       param="stop", code="invalid_value")
    return tuple(dict.fromkeys(strings))


def parse_logprobs(payload: dict, limits: ServerLimits, stream: bool) -> int | None:
    """``logprobs: true`` (+ ``top_logprobs: K``) -> K (0 without top_logprobs); None when not asked."""
    logprobs, top = payload.get("logprobs"), payload.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise ApiError(400, "'logprobs' must be a boolean", param="logprobs", code="invalid_type")
    k = _integer(payload, "top_logprobs", None, 0, limits.max_top_logprobs)
    if not logprobs:
        if top is not None:
            raise ApiError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs",
                           code="invalid_value")
        return None
    if stream:
        raise ApiError(400, "logprobs are returned for non-streaming requests only", param="logprobs",
                       code="unsupported")
    return k or 0


def parse_chat_request(payload: dict, *, count_tokens: Callable[[list[str]], int], context: int,
                       defaults: SamplingConfig, limits: ServerLimits) -> ChatParams:
    """Validate a chat completion request (the model name is checked by the caller)."""
    _check_unsupported(payload)
    turns = parse_turns(payload.get("messages"), limits.system)
    prompt_tokens = count_tokens(turns)
    window = min(context, limits.max_context or context)
    config = parse_sampling(payload, defaults, limits, window - prompt_tokens)
    n = _integer(payload, "n", 1, 1, limits.max_n)
    seed = _integer(payload, "seed", None, -(1 << 63), (1 << 63) - 1)
    stream = False if payload.get("stream") is None else payload["stream"]
    options = {} if payload.get("stream_options") is None else payload["stream_options"]
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise ApiError(400, "'stream' must be a boolean and 'stream_options' an object", param="stream")
    if not isinstance(options.get("include_usage", False), bool):
        raise ApiError(400, "'stream_options.include_usage' must be a boolean", param="stream_options",
                       code="invalid_type")
    return ChatParams(turns, config, secrets.randbits(63) if seed is None else seed, n, stream,
                      bool(options.get("include_usage")), prompt_tokens, parse_logprobs(payload, limits, stream),
                      parse_stop(payload))
