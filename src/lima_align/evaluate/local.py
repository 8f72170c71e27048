"""The built-in local judge: a transformers instruct model in process, behind the same Protocol as the HTTP judges.

It speaks its OWN chat template (``tokenizer.apply_chat_template``), not the LIMA training template: a judge is an
off-the-shelf instruct model, and prompting it in a format it was never tuned on (with a new, untrained EOT
token) makes it answer "A" to everything. Nothing is added to its tokenizer. A system message goes into the
template's system turn; a template without one (a lima-align checkpoint's raises on it) gets it folded into the
first user message. A model without a chat template (a base model) is refused with an error saying so.

Decoding is a judge's, not LIMA's sampling: no repetition penalty (the Likert protocol asks it to repeat its
score), no nucleus; greedy at temperature 0 (the default of every shipped judge), plain sampling from the
softmax at a temperature > 0, with a ``torch.Generator`` per call seeded from the call's cache key
(:func:`~lima_align.evaluate.clients.call_seed`): two different calls never share a seed, a repeated call is
reproducible, and no global RNG is touched.

A weighted call (``params.top_logprobs`` > 0) is one forward pass: the reply holds the log-probabilities of the
first reply token, its top-K plus every vocabulary token that spells one of ``params.candidates`` (spaces
stripped), so the verdict tokens are always there and a weighted verdict is never missing.

One model, loaded once; its calls run one at a time in a worker thread (the event loop stays free).
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any, Iterable, Mapping

import torch
from jinja2 import TemplateError
from transformers import DynamicCache

from lima_align.errors import LimaError
from lima_align.evaluate.cache import cache_key
from lima_align.evaluate.clients import CallParams, Reply, call_seed
from lima_align.generate.loading import pick_device
from lima_align.models import load_model, load_tokenizer

Message = dict[str, str]


class LocalJudge:
    """A causal LM and its tokenizer (which must have a chat template); ``model`` names it in keys and rows."""

    cache_tag = "chat-template"  # in its cache keys: the earlier judge prompted the same model the LIMA way

    def __init__(self, lm: Any, tokenizer: Any, model: str):
        require_chat_template(tokenizer, model)
        self.lm = lm.eval()
        self.tokenizer = tokenizer
        self.model = model
        self.stop_ids = end_of_turn_ids(tokenizer) | _eos_ids(tokenizer, lm)
        self.context = getattr(lm.config, "max_position_embeddings", None) or 1 << 30
        self._model_lock = threading.Lock()  # one call at a time on the model, whatever thread or loop asks
        self._loop_lock_of: tuple[Any, asyncio.Lock] | None = None  # (event loop, its lock): calls wait there
        self.texts = TokenTexts(tokenizer)

    @classmethod
    def load(cls, model: str, *, device: str | None = None) -> "LocalJudge":
        """Load ``model`` (a built-in name, folder or hub id) as it is: no token added, its own template."""
        tokenizer = load_tokenizer(model)
        require_chat_template(tokenizer, model)  # before loading the weights
        dev = pick_device(device)
        dtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        return cls(load_model(model, dtype=dtype).to(dev), tokenizer, model)

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        return judge_prompt_ids(self.tokenizer, messages)

    async def complete(self, messages: list[Message], params: CallParams) -> Reply:
        key = params.key or cache_key(f"{self.model}@{self.cache_tag}", "", messages, params.to_dict())
        seed = call_seed(key, params.seed)
        async with self._loop_lock():
            try:
                reply = await asyncio.to_thread(self._call, messages, params, seed)
            except Exception as exc:  # noqa: BLE001 - a failed call is recorded, the run goes on
                reply = Reply(None, error=f"{type(exc).__name__}: {exc}")
        reply.seed = seed
        return reply

    def _loop_lock(self) -> asyncio.Lock:
        """An asyncio lock of the running loop (a judge outlives ``asyncio.run``: each run has its own loop)."""
        loop = asyncio.get_running_loop()
        if self._loop_lock_of is None or self._loop_lock_of[0] is not loop:
            self._loop_lock_of = (loop, asyncio.Lock())
        return self._loop_lock_of[1]

    def _call(self, messages: list[Message], params: CallParams, seed: int) -> Reply:
        with self._model_lock:
            return self._call_locked(messages, params, seed)

    def _call_locked(self, messages: list[Message], params: CallParams, seed: int) -> Reply:
        ids = self.prompt_ids(messages)
        budget = 1 if params.top_logprobs else params.max_tokens
        if len(ids) + budget > self.context:
            return Reply(None, error=f"prompt has {len(ids)} tokens; the judge's context is {self.context}")
        if params.top_logprobs:
            return self.first_token_logprobs(ids, params.top_logprobs, params.candidates)
        out = self.decode(ids, params.max_tokens, params.temperature, seed)
        content = out[:-1] if out and out[-1] in self.stop_ids else out
        return Reply(self.tokenizer.decode(content, skip_special_tokens=True), len(ids), len(out))

    @torch.inference_mode()
    def decode(self, ids: list[int], max_tokens: int, temperature: float, seed: int) -> list[int]:
        """Greedy (temperature 0) or plain sampling with a KV cache; ends at a stop token or ``max_tokens``."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        cache = DynamicCache(config=self.lm.config)
        step = torch.tensor([ids], device=self.device)
        out: list[int] = []
        while len(out) < max_tokens:
            logits = self.lm(input_ids=step, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
            token = pick_token(logits[0, -1].float(), temperature, gen)
            out.append(token)
            if token in self.stop_ids:
                break
            step = torch.tensor([[token]], device=self.device)
        return out

    @torch.inference_mode()
    def next_token_logprobs(self, ids: list[int]) -> torch.Tensor:
        """log-softmax of the model's logits for the token after ``ids`` (float32, the whole vocabulary)."""
        logits = self.lm(input_ids=torch.tensor([ids], device=self.device), logits_to_keep=1).logits
        return logits[0, -1].float().log_softmax(-1)

    def first_token_logprobs(self, ids: list[int], k: int, candidates: tuple[str, ...]) -> Reply:
        """A weighted reply: token text -> logprob for the top ``k`` and every token spelling a candidate."""
        logprobs = self.next_token_logprobs(ids)
        top = logprobs.topk(min(k, logprobs.numel())).indices.tolist()
        chosen = set(top) | set(self.texts.candidate_ids(candidates))
        by_text = self.texts.by_text((i, float(logprobs[i])) for i in chosen)
        return Reply(self.texts.text(int(logprobs.argmax())), len(ids), 1, logprobs=by_text)


class TokenTexts:
    """The text of each vocabulary token of a tokenizer, and which tokens spell a verdict (weighted calls)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._texts: list[str] | None = None
        self._candidate_ids: dict[tuple[str, ...], list[int]] = {}

    def text(self, token_id: int) -> str:
        texts = self._all()
        return texts[token_id] if token_id < len(texts) else ""

    def candidate_ids(self, candidates: tuple[str, ...]) -> list[int]:
        """Every vocabulary id whose text, spaces stripped, is one of ``candidates`` ("A" and " A" alike)."""
        if candidates not in self._candidate_ids:
            wanted = set(candidates)
            self._candidate_ids[candidates] = [i for i, t in enumerate(self._all()) if t.strip() in wanted]
        return self._candidate_ids[candidates]

    def by_text(self, logprobs: Iterable[tuple[int, float]]) -> dict[str, float]:
        """(token id, logprob) pairs as token text -> logprob; ids that spell the same text add up."""
        out: dict[str, float] = {}
        for i, lp in sorted(logprobs):
            text = self.text(i)
            out[text] = _logaddexp(out.get(text, -math.inf), lp)
        return out

    def _all(self) -> list[str]:
        if self._texts is None:  # once: the text of every token (~0.3 s for a 49k vocabulary)
            self._texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        return self._texts


def judge_prompt_ids(tokenizer: Any, messages: list[Message]) -> list[int]:
    """The model's chat template with the generation prompt; a system turn it rejects is folded in."""
    try:
        return _template_ids(tokenizer, messages)
    except TemplateError:
        if not any(m["role"] == "system" for m in messages):
            raise
        return _template_ids(tokenizer, fold_system(messages))


def require_chat_template(tokenizer: Any, model: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise LimaError(f"{model}: the tokenizer has no chat template, so this looks like a base model; the local "
                        f"judge needs an instruct model that has one (e.g. smollm2-135m-instruct)")


def pick_token(logits: torch.Tensor, temperature: float, gen: torch.Generator) -> int:
    """argmax at temperature 0, else a draw from softmax(logits / temperature): no penalty, no truncation."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = (logits / temperature).softmax(-1)
    return int(torch.multinomial(probs, 1, generator=gen)[0])


def fold_system(messages: list[Message]) -> list[Message]:
    """System messages prepended to the first user message, for a chat template without a system role."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest:
        rest[0]["content"] = "\n\n".join(system + [rest[0]["content"]])
    return rest


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    """The special token the chat template closes an assistant turn with (``<|im_end|>``, ``<end_of_turn>``,
    a lima-align checkpoint's EOT): the judge's reply ends there even when it is not the tokenizer's EOS."""
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "LIMAJUDGEMARK"}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that needs more than this; EOS still stops the reply
        return set()
    after = text.split("LIMAJUDGEMARK", 1)[-1]
    ids = tokenizer.encode(after, add_special_tokens=False) if after else []
    return {ids[0]} if ids and ids[0] in set(tokenizer.all_special_ids) else set()


def _eos_ids(tokenizer: Any, lm: Any) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(lm, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids |= set(configured) if isinstance(configured, (list, tuple)) else {configured}
    return ids


def _template_ids(tokenizer: Any, messages: list[Message]) -> list[int]:
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"] if isinstance(out, Mapping) else out)


def _logaddexp(a: float, b: float) -> float:
    hi = max(a, b)
    return hi if hi == -math.inf else hi + math.log(math.exp(a - hi) + math.exp(b - hi))
