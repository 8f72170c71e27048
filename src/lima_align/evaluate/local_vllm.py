"""The built-in local judge on vLLM (``kind: local`` with ``engine: {name: vllm}``): the same prompts and replies as
:class:`~lima_align.evaluate.local.LocalJudge`, with vLLM's continuous batching behind the judge's concurrency.

Calls from the judging runner's event loop are added to one vLLM engine as they come (up to the judge's
``concurrency`` in flight); a thread steps the engine while any are pending and hands each finished request
back to the loop. Prompts are the model's own chat template (:func:`~lima_align.evaluate.local.judge_prompt_ids`,
as token ids: vLLM never renders). Decoding is a judge's: greedy at temperature 0, plain sampling above (no
penalty, no nucleus), seeded per call from its cache key. A weighted call is one one-token request for the raw
first-token log-probabilities of every token spelling a verdict (and of the most likely token, the reply's
text): the same numbers as the HF judge's for those tokens. Its top ``K`` others are NOT returned: vLLM 0.32 gives
a batch either each request's top-K or each request's chosen ids (the latter wins batch-wide when both are
asked), and a verdict reads the verdict tokens only.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from lima_align.errors import LimaError
from lima_align.evaluate.cache import cache_key
from lima_align.evaluate.clients import CallParams, Reply, call_seed
from lima_align.evaluate.local import Message, TokenTexts, end_of_turn_ids, judge_prompt_ids, require_chat_template
from lima_align.generate.engines import EngineOptions
from lima_align.models import load_tokenizer, resolve_model


class VLLMJudge:
    """An instruct model in a vLLM engine; ``model`` names it in keys and rows."""

    cache_tag = "chat-template+vllm"  # its own cache keys: another engine's sampled draws are other draws

    def __init__(self, model: str, options: EngineOptions = EngineOptions(name="vllm"), device: str | None = None):
        from lima_align.generate.vllm_engine import import_vllm, new_llm

        import_vllm()  # before the tokenizer: say at once that vLLM is missing
        self.model = model
        self.tokenizer = load_tokenizer(model)
        require_chat_template(self.tokenizer, model)
        self.texts = TokenTexts(self.tokenizer)
        eos = self.tokenizer.eos_token_id
        self.stop_ids = sorted(end_of_turn_ids(self.tokenizer) | ({eos} if eos is not None else set()))
        self.llm = new_llm(resolve_model(model), options, device)
        self.context = self.llm.llm_engine.vllm_config.model_config.max_model_len
        self._lock = threading.Lock()  # the engine is not thread-safe: adds and steps take turns
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._stepper: threading.Thread | None = None
        self._next_id = 0

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        return judge_prompt_ids(self.tokenizer, messages)

    async def complete(self, messages: list[Message], params: CallParams) -> Reply:
        key = params.key or cache_key(f"{self.model}@{self.cache_tag}", "", messages, params.to_dict())
        seed = call_seed(key, params.seed)
        try:
            reply = await self._call(messages, params, seed)
        except Exception as exc:  # noqa: BLE001 - a failed call is recorded, the run goes on
            reply = Reply(None, error=f"{type(exc).__name__}: {exc}")
        reply.seed = seed
        return reply

    async def _call(self, messages: list[Message], params: CallParams, seed: int) -> Reply:
        from vllm import SamplingParams

        ids = self.prompt_ids(messages)
        budget = 1 if params.top_logprobs else params.max_tokens
        if len(ids) + budget > self.context:
            return Reply(None, error=f"prompt has {len(ids)} tokens; the judge's context is {self.context}")
        if params.top_logprobs:
            candidates = self.texts.candidate_ids(params.candidates)[:128]  # vLLM's cap per request
            if not candidates:
                return Reply(None, error=f"no token of the vocabulary spells one of {params.candidates}")
            out = await self._submit(ids, SamplingParams(temperature=0.0, max_tokens=1, detokenize=False,
                                                         logprob_token_ids=candidates))
            return Reply(self.texts.text(out.outputs[0].token_ids[0]), len(ids), 1,
                         logprobs=self.texts.by_text(_logprobs(out).items()))
        out = await self._submit(ids, SamplingParams(
            temperature=params.temperature, max_tokens=params.max_tokens, seed=seed if params.temperature > 0
            else None, stop_token_ids=self.stop_ids, ignore_eos=True, detokenize=False))
        tokens = list(out.outputs[0].token_ids)
        content = tokens[:-1] if tokens and tokens[-1] in self.stop_ids else tokens
        return Reply(self.tokenizer.decode(content, skip_special_tokens=True), len(ids), len(tokens))

    async def _submit(self, ids: list[int], sampling: Any) -> Any:
        """Add one request to the engine; the result comes back when the stepping thread sees it finish."""
        if sampling is None:
            return None
        from vllm.inputs import TokensPrompt

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            request_id = f"judge-{self._next_id}"
            self._next_id += 1
            self._waiting[request_id] = (loop, future)
            self.llm.llm_engine.add_request(request_id, TokensPrompt(prompt_token_ids=ids), sampling)
            if self._stepper is None or not self._stepper.is_alive():
                self._stepper = threading.Thread(target=self._step, name="vllm-judge", daemon=True)
                self._stepper.start()
        return await future

    def _step(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._stepper = None
                    return
                try:
                    outs = self.llm.llm_engine.step()
                except Exception as exc:  # noqa: BLE001 - every waiting call fails with it, none hangs
                    for loop, future in self._waiting.values():
                        loop.call_soon_threadsafe(_settle, future, None, exc)
                    self._waiting.clear()
                    self._stepper = None
                    return
                for out in outs:
                    if out.finished and out.request_id in self._waiting:
                        loop, future = self._waiting.pop(out.request_id)
                        loop.call_soon_threadsafe(_settle, future, out, None)

    def close(self) -> None:
        from lima_align.generate.vllm_engine import shutdown

        if getattr(self, "llm", None) is not None:
            shutdown(self.llm)
            self.llm = None


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(LimaError(f"vLLM engine: {error}"))
    else:
        future.set_result(result)


def _logprobs(out: Any) -> dict[int, float]:
    """Token id -> raw log-probability at the first reply position of a one-token request."""
    first = (out.outputs[0].logprobs or [{}])[0]
    return {int(token): float(lp.logprob) for token, lp in first.items()}
