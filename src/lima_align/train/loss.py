"""A memory-light causal-LM loss for large vocabularies: LM head + cross-entropy on supervised tokens, in chunks.

Gemma-3 has 262k tokens: full logits for a 2,048-token sequence are 2 GB in fp32, plus as much again for their
gradient. Instead the model runs with ``logits_to_keep=1`` (almost no logits) and returns its final hidden states;
we then keep only the positions whose next token is supervised (about half of LIMA's tokens) and run the LM head
and cross-entropy over them ``chunk`` tokens at a time under activation checkpointing, so at most one chunk of
logits is alive at once, forward or backward. Going through the model's own forward keeps DDP/FSDP/ZeRO-3 wrappers
and their hooks in the loop; the head applied afterwards is the one exception (see :func:`_head`).

The loss is returned as a SUM over supervised tokens with their count; the caller divides by the number of
supervised tokens of the whole accumulated batch (token-normalised gradient accumulation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.distributed.fsdp import FSDPModule
from torch.utils.checkpoint import checkpoint

IGNORE = -100


def shifted_targets(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token targets aligned with positions: target[t] = labels[t+1]; the last position gets -100."""
    labels = inputs["labels"]
    return F.pad(labels[..., 1:], (0, 1), value=IGNORE)


def lm_loss_sum(model: Any, inputs: dict[str, torch.Tensor], chunk: int = 4096) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over supervised tokens, and their count. ``chunk=0``: one chunk."""
    targets = shifted_targets(inputs)
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    outputs = model(**model_inputs, output_hidden_states=True, logits_to_keep=1, use_cache=False)
    hidden = outputs.hidden_states[-1]
    keep = targets.ne(IGNORE)
    hidden, targets = hidden[keep], targets[keep]
    n = int(targets.numel())
    if n == 0:
        return hidden.sum() * 0.0, 0
    head = _head(model)
    softcap = getattr(_unwrap(model).config, "final_logit_softcapping", None)
    step = n if chunk <= 0 else chunk
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, n, step):
        h, t = hidden[start:start + step], targets[start:start + step]
        if torch.is_grad_enabled() and h.requires_grad:
            total = total + checkpoint(_chunk_ce, head, softcap, h, t, use_reentrant=False)
        else:
            total = total + _chunk_ce(head, softcap, h, t)
    return total, n


def _head(model: Any) -> Any:
    """The LM head as a function of hidden states.

    Under FSDP2 the head's parameters are still gathered after the model's forward (accelerate puts the head in a
    group that does not reshard after forward, the root's default too), but calling the head MODULE a second time
    in the step runs its FSDP hooks again, and backward then crashes (a segfault in torch 2.13's autograd engine,
    seen on CPU/gloo). So there the head is applied through its gathered weight; its gradient reaches the group's
    reduce-scatter like the forward's own. Everywhere else (DDP, ZeRO-3, whose hooks gather the weight for the
    call, peft wrappers) the module is called.
    """
    head = _unwrap(model).get_output_embeddings()
    if isinstance(model, FSDPModule) and isinstance(head, torch.nn.Linear):
        return lambda hidden: F.linear(hidden, head.weight, head.bias)
    return head


def _chunk_ce(head: Any, softcap: float | None, hidden: torch.Tensor, targets: torch.Tensor):
    logits = head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="sum")


def _unwrap(model: Any) -> Any:
    """The HF model under DDP/FSDP (``.module``) and peft (``get_base_model``) wrappers."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model
