"""The paper's repetition penalty inside vLLM: a vLLM logits processor that penalises GENERATED tokens only.

vLLM's own ``repetition_penalty`` penalises every prompt token as well (the union of the prompt's and the output's
token masks), which pushes a model away from the words of the question it answers. This processor applies
Keskar et al.'s rule (positive logits divided by the penalty, negative ones multiplied) to the tokens a request
has generated so far, on the raw logits, before temperature and nucleus - the order of our HF engine
(:func:`lima_align.generate.decoding.next_tokens`).

A request asks for it with ``SamplingParams(extra_args={PENALTY_ARG: 1.2}, repetition_penalty=1.0)``; over
HTTP (``vllm serve CKPT --logits-processors lima_align.generate.vllm_penalty:GeneratedTokensPenalty``) the same
value goes in the request body as ``"vllm_xargs": {"lima_repetition_penalty": 1.2}``.

It is written for vLLM's V1 model-runner interface (``vllm.v1.sample.logits_processor.LogitsProcessor``):
the engine that loads it must run the V1 model runner (``VLLM_USE_V2_MODEL_RUNNER=0``, which
:class:`~lima_align.generate.vllm_engine.VLLMEngine` sets; vLLM picks V1 on CPU anyway).
"""

from __future__ import annotations

from typing import Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

PENALTY_ARG = "lima_repetition_penalty"
FQCN = "lima_align.generate.vllm_penalty:GeneratedTokensPenalty"


def requested_penalty(params: SamplingParams | None) -> float:
    """The request's generated-only penalty (1.0: none); a bad value is refused at admission."""
    value = (getattr(params, "extra_args", None) or {}).get(PENALTY_ARG, 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{PENALTY_ARG} must be a number > 0, got {value!r}")
    return float(value)


class GeneratedTokensPenalty(LogitsProcessor):
    """Per batch row: (penalty, the request's live list of output token ids)."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        requested_penalty(sampling_params)

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool):
        self.rows: dict[int, tuple[float, list[int]]] = {}

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token is most likely: greedy decoding must see it too

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        def state(params: SamplingParams, _prompt: list[int] | None, output: list[int]):
            penalty = requested_penalty(params)
            return None if penalty == 1.0 else (penalty, output)  # ``output`` grows in place as tokens come

        process_dict_updates(self.rows, batch_update, state)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        rows: list[int] = []
        cols: list[int] = []
        factors: list[float] = []
        for row, (penalty, output) in self.rows.items():
            seen = set(output)
            rows += [row] * len(seen)
            cols += seen
            factors += [penalty] * len(seen)
        if not rows:
            return logits
        r = torch.tensor(rows, device=logits.device)
        c = torch.tensor(cols, device=logits.device)
        p = torch.tensor(factors, device=logits.device, dtype=logits.dtype)
        values = logits[r, c]
        logits[r, c] = torch.where(values > 0, values / p, values * p)
        return logits
