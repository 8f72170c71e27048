"""Judge clients: anything that turns chat messages into a reply, behind one Protocol.

:class:`OpenAIJudge` talks to any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, ``lima-align serve``) with
an async concurrency limit and its own retry loop (exponential backoff with jitter, honouring ``Retry-After``)
on 429, 5xx, timeouts, connection errors and unreadable bodies. Other 4xx are not retried: the request itself is
wrong. A call that still fails comes back as a :class:`Reply` with ``error`` set, never as an exception, so a
run always ends with every item judged or recorded missing. :class:`CachedJudge` composes any client with a
cache and counts tokens and cost.

Weighted calls (``CallParams.top_logprobs > 0``) ask for ONE token and the log-probabilities of the most likely
first tokens (``logprobs: true, top_logprobs: K, max_tokens: 1``): the reply's ``logprobs`` maps token text to
log-probability, and the caller reads its verdict from them (:func:`~lima_align.evaluate.parsers.choice_probs`).
An endpoint that answers without logprobs is an error, not retried: it cannot serve this mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from lima_align.errors import LimaError
from lima_align.evaluate.cache import cache_key

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


@dataclass
class Reply:
    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    error: str | None = None
    cached: bool = False
    cost_usd: float = 0.0
    key: str = ""
    logprobs: dict[str, float] | None = None  # weighted calls: first-token text -> log-probability
    seed: int | None = None  # the RNG seed a local judge used for this call


@dataclass(frozen=True)
class CallParams:
    """Sampling settings of one judge call; part of the cache key (``sample`` separates repeated draws).

    ``top_logprobs`` > 0 makes it a weighted call (one token, its top-K log-probabilities); ``candidates`` are
    the verdict tokens a local judge reports whatever their rank. ``key`` is the call's cache key, filled in by
    :class:`CachedJudge` (not part of the key itself): a local judge derives its RNG seed from it.
    """

    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None
    sample: int = 0
    top_logprobs: int = 0
    candidates: tuple[str, ...] = ()
    key: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The cache-key view: generate calls keep the keys they had before the weighted mode existed."""
        values = asdict(self)
        del values["key"]
        if not self.top_logprobs:
            del values["top_logprobs"], values["candidates"]
        else:
            values["candidates"] = list(self.candidates)
        return values


def call_seed(key: str, base_seed: int | None = None) -> int:
    """The RNG seed of one judge call: a hash of its cache key (and the judge's configured seed), so two
    different calls never share a seed and a repeated call gets the same one (63 bits, as torch wants)."""
    digest = hashlib.sha256(f"judge-call\x00{base_seed or 0}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


class ChatJudge(Protocol):
    """A judge backend. ``model`` names it in the cache key and in every judgment row."""

    model: str

    async def complete(self, messages: list[dict[str, str]], params: CallParams) -> Reply: ...


@dataclass
class Usage:
    """What a run cost: calls asked, cache hits, HTTP attempts, failures, tokens and dollars."""

    calls: int = 0
    cache_hits: int = 0
    attempts: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cost_usd": round(self.cost_usd, 6)}


@dataclass
class Pricing:
    """US dollars per million tokens (0: free, e.g. a local server)."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


@dataclass
class RetryPolicy:
    max_retries: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    timeout_s: float = 120.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff_s)
        base = min(self.backoff_s * (2 ** attempt), self.max_backoff_s)
        return base * (0.5 + random.random() / 2)  # jitter: concurrent callers do not retry in lockstep


class OpenAIJudge:
    """Any OpenAI-compatible chat endpoint through the official ``openai`` async client (imported lazily)."""

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 concurrency: int = 8, retry: RetryPolicy = RetryPolicy()):
        try:
            import openai
        except ImportError:
            raise LimaError("the OpenAI-compatible judge needs the 'openai' package: "
                            "pip install 'lima-align[judges]'") from None
        self.model = model
        self.retry = retry
        self._openai = openai
        self._client = openai.AsyncOpenAI(base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
                                          api_key=api_key or os.environ.get("OPENAI_API_KEY") or "unused",
                                          max_retries=0, timeout=retry.timeout_s)
        self._limit = asyncio.Semaphore(concurrency)
        self.base_url = str(self._client.base_url)

    async def complete(self, messages: list[dict[str, str]], params: CallParams) -> Reply:
        last_error = ""
        for attempt in range(self.retry.max_retries + 1):
            async with self._limit:
                outcome = await self._attempt(messages, params)
            if isinstance(outcome, Reply):
                outcome.attempts = attempt + 1
                return outcome
            last_error, retryable, retry_after = outcome
            if not retryable or attempt == self.retry.max_retries:
                break
            await asyncio.sleep(self.retry.delay(attempt, retry_after))
        return Reply(None, attempts=attempt + 1, error=last_error)

    async def _attempt(self, messages: list[dict[str, str]], params: CallParams
                       ) -> Reply | tuple[str, bool, float | None]:
        """One HTTP call: a Reply, or (error, retryable, retry_after seconds)."""
        oa = self._openai
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages,
                                  "temperature": params.temperature, "max_tokens": params.max_tokens}
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if params.top_logprobs:
            kwargs.update(logprobs=True, top_logprobs=params.top_logprobs, max_tokens=1)
        try:
            resp = await self._client.chat.completions.create(**kwargs)
        except oa.APIStatusError as exc:
            retry_after = _retry_after(exc.response.headers.get("retry-after"))
            return f"HTTP {exc.status_code}: {str(exc)[:300]}", exc.status_code in RETRY_STATUS, retry_after
        except (oa.APITimeoutError, oa.APIConnectionError) as exc:
            return f"{type(exc).__name__}: {exc}", True, None
        except (oa.APIResponseValidationError, ValueError) as exc:  # a 200 whose body is not a completion
            return f"bad response body: {str(exc)[:300]}", True, None
        try:
            text = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            return f"bad response body: {str(resp)[:300]}", True, None
        if not isinstance(text, str):
            return f"bad response body: no message content in {str(resp)[:300]}", True, None
        logprobs = None
        if params.top_logprobs:
            logprobs = first_token_logprobs(resp.choices[0])
            if logprobs is None:
                return (f"the endpoint returned no logprobs (the weighted mode needs 'logprobs' / 'top_logprobs' "
                        f"support; use mode: generate): {str(resp)[:200]}"), False, None
        usage = getattr(resp, "usage", None)
        return Reply(text, prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                     completion_tokens=getattr(usage, "completion_tokens", 0) or 0, logprobs=logprobs)

    async def aclose(self) -> None:
        await self._client.close()


def first_token_logprobs(choice: Any) -> dict[str, float] | None:
    """``choices[0].logprobs.content[0]`` as {token: logprob}: its ``top_logprobs`` and the sampled token."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    first = content[0]
    pairs = [(t.token, t.logprob) for t in (getattr(first, "top_logprobs", None) or ())]
    out: dict[str, float] = {}
    for token, logprob in pairs + [(first.token, first.logprob)]:  # a text listed twice: its first entry
        if isinstance(token, str) and logprob is not None:
            out.setdefault(token, float(logprob))
    return out


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class CachedJudge:
    """A judge behind the persistent cache, with usage accounting. ``complete`` never raises for a failed call."""

    client: ChatJudge
    cache: Any
    pricing: Pricing = field(default_factory=Pricing)
    usage: Usage = field(default_factory=Usage)

    @property
    def model(self) -> str:
        return self.client.model

    async def complete(self, messages: list[dict[str, str]], params: CallParams, template_version: str) -> Reply:
        # a client's ``cache_tag`` names how it prompts (the local judge's own chat template): replies of a judge
        # that prompted the same model another way, in an old cache, are not reused
        tag = getattr(self.client, "cache_tag", "")
        key = cache_key(self.client.model + (f"@{tag}" if tag else ""), template_version, messages, params.to_dict())
        self.usage.calls += 1
        hit = self.cache.get(key)
        if hit is not None:
            self.usage.cache_hits += 1
            return Reply(hit["text"], hit["prompt_tokens"], hit["completion_tokens"], attempts=0, cached=True,
                         cost_usd=hit.get("cost_usd", 0.0), key=key, logprobs=hit.get("logprobs"),
                         seed=hit.get("seed"))
        reply = await self.client.complete(messages, replace(params, key=key))
        reply.key = key
        self.usage.attempts += reply.attempts
        if reply.error is not None:
            self.usage.failures += 1
            return reply
        reply.cost_usd = self.pricing.cost(reply.prompt_tokens, reply.completion_tokens)
        self.usage.prompt_tokens += reply.prompt_tokens
        self.usage.completion_tokens += reply.completion_tokens
        self.usage.cost_usd += reply.cost_usd
        self.cache.put(key, {"text": reply.text, "prompt_tokens": reply.prompt_tokens,
                             "completion_tokens": reply.completion_tokens, "cost_usd": reply.cost_usd,
                             "logprobs": reply.logprobs, "seed": reply.seed, "model": self.client.model,
                             "at": time.time()})
        return reply
