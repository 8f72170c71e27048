"""A local transformers judge (e.g. the built-in ``smollm2-135m-instruct``) behind the same Protocol as the
HTTP judges. The engine owns one model and is not thread-safe, so calls run one at a time in a worker thread
(the event loop stays free for the rest of the run)."""

from __future__ import annotations

import asyncio
from typing import Any

from lima_align.evaluate.clients import CallParams, Reply

_USER, _ASSISTANT = "user", "assistant"


class LocalJudge:
    """Wraps an :class:`~lima_align.generate.engine.HFEngine`; ``model`` names it in cache keys and rows."""

    def __init__(self, engine: Any, model: str):
        self.engine = engine
        self.model = model
        self._lock = asyncio.Lock()

    @classmethod
    def load(cls, model: str, *, device: str | None = None, add_eot: bool = True) -> "LocalJudge":
        from lima_align.generate.engine import HFEngine
        from lima_align.generate.loading import load_for_generation

        lm, tokenizer, fmt = load_for_generation(model, add_eot=add_eot, device=device)
        return cls(HFEngine(lm, tokenizer, fmt, batch_size=1), model)

    async def complete(self, messages: list[dict[str, str]], params: CallParams) -> Reply:
        turns = _turns(messages)
        async with self._lock:
            try:
                completion = await asyncio.to_thread(self._generate, turns, params)
            except Exception as exc:  # noqa: BLE001 - a failed call is recorded, the run goes on
                return Reply(None, error=f"{type(exc).__name__}: {exc}")
        if completion.error:
            return Reply(None, error=completion.error)
        return Reply(completion.text, completion.prompt_tokens, completion.completion_tokens)

    def _generate(self, turns: list[str], params: CallParams) -> Any:
        from lima_align.generate.engine import Request
        from lima_align.generate.decoding import SamplingConfig

        config = SamplingConfig(temperature=params.temperature, max_new_tokens=params.max_tokens,
                                seed=params.seed or 0)
        (completion,) = self.engine.generate([Request("judge", turns, params.sample)], config)
        return completion


def _turns(messages: list[dict[str, str]]) -> list[str]:
    """The LIMA template has no system role: a system message is prepended to the first user turn."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m["content"] for m in messages if m["role"] in (_USER, _ASSISTANT)]
    if system and turns:
        turns[0] = "\n\n".join(system + [turns[0]])
    return turns
