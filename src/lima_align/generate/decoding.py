"""LIMA sampling (section 3): nucleus p = 0.9, temperature 0.7, repetition penalty 1.2 on GENERATED tokens.

The paper follows Keskar et al. (2019) and penalises tokens the model has already generated. transformers'
``RepetitionPenaltyLogitsProcessor`` and vLLM's ``repetition_penalty`` also penalise every prompt token, which
pushes a model away from the words of the question it answers. :class:`GeneratedTokensRepetitionPenalty` and
:func:`apply_repetition_penalty` implement the paper's version; ``penalty_scope="all"`` gives the libraries' one
(for comparison).

:func:`find_stop` says where a text meets a stop string (a turn boundary of an in-context prompt), for every engine.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch

SCOPES = ("generated", "all")
GREEDY_BELOW = 1e-5  # the limit of sampling as the temperature goes to 0 is the argmax


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings; the defaults are the paper's. ``temperature=0`` means greedy decoding, and so does any
    temperature under ``GREEDY_BELOW`` (dividing logits by it overflows to inf; vLLM draws the same line)."""

    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.2
    penalty_scope: str = "generated"  # "generated" (the paper) or "all" (prompt too, as HF and vLLM do)
    max_new_tokens: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.penalty_scope not in SCOPES:
            raise ValueError(f"penalty_scope must be one of {SCOPES}, got {self.penalty_scope!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row_seed(seed: int, key: str, sample: int) -> int:
    """A per-(prompt, sample) seed: the same text comes out whatever the batch it was decoded in."""
    digest = hashlib.sha256(f"{seed}\x00{key}\x00{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def find_stop(text: str, stop: Sequence[str]) -> int:
    """Where the earliest of the ``stop`` strings begins in ``text``, or -1 when none occurs."""
    found = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(found) if found else -1


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Keskar et al.: divide positive logits of seen tokens by ``penalty``, multiply negative ones by it.

    ``seen`` is a boolean ``[batch, vocab]`` mask of the tokens to penalise.
    """
    if penalty == 1.0:
        return logits
    rows, cols = seen.nonzero(as_tuple=True)  # few tokens are seen: touch only those
    values = logits[rows, cols]
    out = logits.clone()
    out[rows, cols] = torch.where(values > 0, values / penalty, values * penalty)
    return out


def nucleus_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every token outside the smallest set whose probability reaches ``top_p`` (keeps >= 1)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # probability mass of the tokens ranked above each token
    drop_sorted = before >= top_p
    drop_sorted[..., 0] = False  # the most likely token, whatever top_p (a tiny one is 0 in float32)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


_NUCLEUS_K = 1024  # candidates looked at first; the full vocabulary only when they do not reach top_p


def next_tokens(logits: torch.Tensor, seen: torch.Tensor, config: SamplingConfig,
                generators: list[torch.Generator]) -> torch.Tensor:
    """Pick one token per row: penalty, then greedy or temperature + nucleus sampling with per-row RNGs.

    Sampling looks at the ``_NUCLEUS_K`` most likely tokens first: when they hold ``top_p`` of the mass the
    nucleus lies inside them and sampling among them is exact. Sorting and sampling over Gemma-3's 262k-token
    vocabulary every step would otherwise cost more than the model's forward pass on a CPU.
    """
    logits = apply_repetition_penalty(logits.float(), seen, config.repetition_penalty)
    if config.greedy:
        return logits.argmax(dim=-1)
    logprobs = (logits / config.temperature).log_softmax(dim=-1)
    k = logprobs.shape[-1] if config.top_p >= 1.0 else min(_NUCLEUS_K, logprobs.shape[-1])
    top_lp, top_idx = logprobs.topk(k, dim=-1)  # sorted, most likely first
    probs = top_lp.exp()
    tokens = []
    for i, gen in enumerate(generators):
        p, idx = probs[i], top_idx[i]
        if p.sum() < config.top_p:  # a flat distribution: the nucleus reaches past the top k
            p, idx = logprobs[i].exp().sort(descending=True)
        keep = (p.cumsum(-1) - p) < config.top_p
        keep[0] = True  # the most likely token always: a tiny top_p (5e-324 is 0 in float32) keeps nothing else
        # sample in token-id order: near-ties that swap places under tiny float differences (another batch,
        # another padding) must not change which token a given random draw picks
        members, order = idx[keep].sort()
        tokens.append(members[torch.multinomial(p[keep][order], 1, generator=gen)[0]])
    return torch.stack(tokens)


class GeneratedTokensRepetitionPenalty:
    """A transformers ``LogitsProcessor`` that penalises only tokens generated after ``prompt_length``.

    For ``model.generate(..., logits_processor=LogitsProcessorList([...]))`` with a (left-padded) batch whose
    prompts all end at ``prompt_length``; use it instead of ``repetition_penalty=`` to get the paper's semantics.
    """

    def __init__(self, penalty: float, prompt_length: int):
        self.penalty = penalty
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length:]
        seen = torch.zeros_like(scores, dtype=torch.bool)
        if generated.numel():
            seen.scatter_(1, generated, True)
        return apply_repetition_penalty(scores, seen, self.penalty)
