"""Batched generation with the Hugging Face model: length-sorted batches, left padding, KV cache, and rows
dropped from the batch as soon as they finish (so a long answer does not keep finished short ones computing).

Prompts are rendered by :func:`lima_align.chat_format.render` - the one template used in training. Each
(prompt, sample) pair gets its own RNG seeded from (seed, prompt id, sample index), so its text does not depend
on which batch it was decoded in.

A request may ask for log-probabilities (``top_logprobs``: None for none, K >= 0 for the sampled token's and
the K most likely): they are the model's own, the log-softmax of its raw logits at each step, before the
repetition penalty, temperature and nucleus (what vLLM reports by default), so they describe the model, not the
sampler.

A request may also bring its own prompt text (``prompt``: e.g. an in-context prompt for an untuned base model,
used as it is instead of the chat format) and ``stop`` strings: a row ends as soon as its text holds one
(finish reason ``stop``), and its text is cut before it. Only the last tokens are decoded at each step to look
for a stop string; the finished row's whole text is searched once more, so a stop string the tail missed still
cuts the text (it only costs the tokens generated past it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch

from lima_align.chat_format import ChatFormat, encode_text, render
from lima_align.generate.decoding import SamplingConfig, find_stop, next_tokens, row_seed

TokenCallback = Callable[[int, int], None]  # (request index, token id), called for every generated token
StopCheck = Callable[[int], bool]  # (request index) -> True to end that row now (e.g. its client went away)


@dataclass
class Request:
    """One thing to generate: the conversation so far (ending on a user turn) and which sample it is.

    ``prompt``, when given, is the text the model continues instead of ``turns`` rendered with the chat format
    (``turns`` still say what was asked); ``stop`` strings end the reply where its text first holds one.
    """

    key: str
    turns: list[str]
    sample: int = 0
    max_new_tokens: int | None = None  # a tighter cap than the sampling config's, for this request only
    top_logprobs: int | None = None  # None: no logprobs; K: the sampled token's and the K most likely
    prompt: str | None = None  # raw prompt text (an in-context prompt), used as it is
    stop: tuple[str, ...] = ()


@dataclass
class TokenLogprob:
    """One generated token, its log-probability and the ``top`` (token text, logprob) alternatives."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Completion:
    """A finished generation. ``finish_reason``: eot, eos, stop (a stop string; ``text`` ends before it),
    length, cancelled (``should_stop`` said so), or error (then ``error`` says why)."""

    index: int  # position of the request in the input
    key: str
    sample: int
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seed: int
    token_ids: list[int] = field(default_factory=list, repr=False)
    error: str | None = None
    logprobs: list[TokenLogprob] | None = None  # one per token of ``text`` when the request asked for them


@dataclass
class _Row:
    index: int
    request: Request
    ids: list[int]
    seed: int
    budget: int  # new tokens this row may generate
    out: list[int] = field(default_factory=list)
    logprobs: list[tuple[int, float, list[tuple[int, float]]]] = field(default_factory=list)


class HFEngine:
    """Generate with a transformers causal LM; ``stop_ids`` end a reply (EOT, and EOS as a fallback).

    A tokenizer without the format's EOT (an untuned base model) stops at EOS only; such a model can answer
    requests that bring their own ``prompt`` (the chat format needs EOT).
    """

    def __init__(self, model: Any, tokenizer: Any, fmt: ChatFormat = ChatFormat(), *, batch_size: int = 16,
                 max_batch_tokens: int = 65536):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.eot_id = tokenizer.get_vocab().get(fmt.eot)  # None, not the unknown token's id, when absent
        eos = tokenizer.eos_token_id
        self.stop_ids = {i for i in (self.eot_id, eos) if i is not None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.context = getattr(model.config, "max_position_embeddings", None) or 1 << 30

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_ids(self, turns: list[str]) -> list[int]:
        return render(turns, self.tokenizer, self.fmt, add_generation_prompt=True).input_ids

    def generate(self, requests: Iterable[Request], config: SamplingConfig,
                 on_token: TokenCallback | None = None,
                 should_stop: StopCheck | None = None) -> Iterator[Completion]:
        """Yield completions as they finish (not in input order; ``Completion.index`` says which).

        ``should_stop(index)`` is asked after every token; True ends that row at once (finish reason
        ``cancelled``) and frees its place in the batch.
        """
        rows, errors = self._prepare(list(requests), config)
        yield from errors
        for batch in self._batches(rows):
            yield from self._run(batch, config, on_token, should_stop)

    def _prepare(self, requests: list[Request], config: SamplingConfig) -> tuple[list[_Row], list[Completion]]:
        rows, errors = [], []
        for i, req in enumerate(requests):
            ids = request_ids(req, self.tokenizer, self.fmt)
            seed = row_seed(config.seed, req.key, req.sample)
            budget = min(req.max_new_tokens or config.max_new_tokens, self.context - len(ids))
            if budget < 1:
                errors.append(Completion(i, req.key, req.sample, "", "error", len(ids), 0, seed,
                                         error=f"prompt has {len(ids)} tokens; the model's context is "
                                               f"{self.context}"))
                continue
            rows.append(_Row(i, req, ids, seed, budget))
        return rows, errors

    def _batches(self, rows: list[_Row]) -> Iterator[list[_Row]]:
        """Group rows of similar length (longest first, so memory problems show up at once)."""
        rows = sorted(rows, key=lambda r: len(r.ids), reverse=True)
        batch: list[_Row] = []
        for row in rows:
            width = len(batch[0].ids) if batch else len(row.ids)
            if batch and (len(batch) >= self.batch_size or width * (len(batch) + 1) > self.max_batch_tokens):
                yield batch
                batch = []
            batch.append(row)
        if batch:
            yield batch

    @torch.inference_mode()
    def _run(self, batch: list[_Row], config: SamplingConfig, on_token: TokenCallback | None,
             should_stop: StopCheck | None) -> Iterator[Completion]:
        from transformers import DynamicCache

        device, width = self.device, max(len(r.ids) for r in batch)
        ids = torch.tensor([[self.pad_id] * (width - len(r.ids)) + r.ids for r in batch], device=device)
        mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in batch], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        seen = torch.zeros(len(batch), vocab, dtype=torch.bool, device=device)
        if config.penalty_scope == "all":
            seen.scatter_(1, ids.masked_fill(mask == 0, ids[0, -1]), True)
        gens = [torch.Generator(device=device).manual_seed(r.seed) for r in batch]
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                         use_cache=True, logits_to_keep=1)
        active = list(batch)
        while active:
            tokens = next_tokens(out.logits[:, -1, :], seen, config, gens)
            _record_logprobs(active, out.logits[:, -1, :], tokens)
            seen.scatter_(1, tokens[:, None], True)
            keep = []
            for j, (row, tok) in enumerate(zip(active, tokens.tolist())):
                row.out.append(tok)
                if on_token is not None:
                    on_token(row.index, tok)
                if should_stop is not None and should_stop(row.index):
                    yield self._finish(row, cancelled=True)
                elif tok in self.stop_ids or len(row.out) >= row.budget or \
                        stop_reached(self.tokenizer, row.out, row.request.stop):
                    yield self._finish(row)
                else:
                    keep.append(j)
            if not keep:
                return
            if len(keep) < len(active):  # drop finished rows from every per-row tensor and the KV cache
                sel = torch.tensor(keep, device=device)
                cache.batch_select_indices(sel)
                mask, positions, seen, tokens = mask[sel], positions[sel], seen[sel], tokens[sel]
                active, gens = [active[j] for j in keep], [gens[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                             past_key_values=cache, use_cache=True)

    def _finish(self, row: _Row, cancelled: bool = False) -> Completion:
        last = row.out[-1]
        if cancelled:
            reason = "cancelled"
        elif last == self.eot_id:
            reason = "eot"
        elif last in self.stop_ids:
            reason = "eos"
        else:
            reason = "length"
        content = row.out[:-1] if reason in ("eot", "eos") else row.out
        text, stopped = decode_reply(self.tokenizer, content, row.request.stop)
        if stopped and reason != "cancelled":
            reason, content = "stop", row.out  # logprobs: every token, the one the stop string ends in included
        return Completion(row.index, row.request.key, row.request.sample, text, reason, len(row.ids),
                          len(row.out), row.seed, list(row.out), logprobs=self._logprobs(row, len(content)))

    def _logprobs(self, row: _Row, n: int) -> list[TokenLogprob] | None:
        """The row's recorded logprobs as token texts, for the ``n`` tokens of its text (no stop token)."""
        if row.request.top_logprobs is None:
            return None
        text = self.token_text
        return [TokenLogprob(text(tok), lp, [(text(i), v) for i, v in top]) for tok, lp, top in row.logprobs[:n]]

    def token_text(self, token_id: int) -> str:
        """One token's own text (special tokens kept; a piece of a UTF-8 character decodes to U+FFFD)."""
        return self.tokenizer.decode([token_id])


def request_ids(request: Request, tokenizer: Any, fmt: ChatFormat) -> list[int]:
    """The prompt ids of ``request``: its own ``prompt`` text when it has one, else its turns in the chat format."""
    if request.prompt is not None:
        return encode_text(request.prompt, tokenizer)
    return render(request.turns, tokenizer, fmt, add_generation_prompt=True).input_ids


# Tokens decoded past a stop string's length when looking for it in a row's tail: a token is at least one
# character but for pieces of one UTF-8 character and skipped special tokens; the finished row's full search
# catches whatever a short tail would miss
_STOP_TAIL_MARGIN = 8


def stop_reached(tokenizer: Any, out: list[int], stop: tuple[str, ...]) -> bool:
    """Whether the text of the generated ``out`` holds a ``stop`` string that ends in its last tokens.

    Only the tail is decoded at each step; a hit there is confirmed on the whole text (a tail that starts inside
    a character could decode differently).
    """
    if not stop:
        return False
    tail = out[-(max(map(len, stop)) + _STOP_TAIL_MARGIN):]
    if find_stop(tokenizer.decode(tail, skip_special_tokens=True), stop) < 0:
        return False
    return find_stop(tokenizer.decode(out, skip_special_tokens=True), stop) >= 0


def decode_reply(tokenizer: Any, ids: list[int], stop: tuple[str, ...]) -> tuple[str, bool]:
    """The text of generated ``ids`` cut before its first ``stop`` string, and whether it held one."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    at = find_stop(text, stop)
    return (text, False) if at < 0 else (text[:at], True)


def _record_logprobs(rows: list[_Row], logits: torch.Tensor, tokens: torch.Tensor) -> None:
    """Append each asking row's step: the sampled token's raw log-probability and its top K alternatives."""
    want = [j for j, row in enumerate(rows) if row.request.top_logprobs is not None]
    if not want:
        return
    sel = torch.tensor(want, device=logits.device)
    logprobs = logits[sel].float().log_softmax(-1)
    chosen = logprobs.gather(1, tokens[sel][:, None])[:, 0].tolist()
    k = max(rows[j].request.top_logprobs for j in want)
    top_lp, top_id = logprobs.topk(k, dim=-1) if k else (logprobs[:, :0], logprobs[:, :0].long())
    for n, j in enumerate(want):
        kj = rows[j].request.top_logprobs
        top = list(zip(top_id[n, :kj].tolist(), top_lp[n, :kj].tolist()))
        rows[j].logprobs.append((int(tokens[j]), chosen[n], top))
