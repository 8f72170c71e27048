"""Per-token loss of held-out reference answers under a model: a judge-free measure of how much closer a model
has come to a reference style (e.g. the GPT-4 reference answers shipped with the Vicuna / MT-bench prompts).

Each reference is rendered with the model's own chat format (:func:`lima_align.chat_format.render`, the training
template and loss mask): the loss is the mean negative log-likelihood over the tokens training supervises in the
answer turn (the answer, its EOT, and the assistant prefix when the format has one), so a model that has learnt to
stop where the reference stops scores better. The summary's interval is a
Student-t interval over references (each reference's mean token loss is one unit).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import torch

from lima_align.chat_format import IGNORE, ChatFormat, render
from lima_align.evaluate.intervals import t_interval


@torch.no_grad()
def reference_losses(model: Any, tokenizer: Any, fmt: ChatFormat, references: Sequence[Sequence[str]]) -> list[dict]:
    """``{"tokens", "loss"}`` per reference conversation (prompt, answer): mean NLL (nats) of its answer tokens."""
    model.eval()
    device = next(model.parameters()).device
    untrimmed = dataclasses.replace(fmt, train_on="assistant", max_len=None)  # the answer's tokens, whole
    out = []
    for turns in references:
        rendered = render(list(turns), tokenizer, untrimmed)
        ids = torch.tensor([rendered.input_ids], device=device)
        labels = torch.tensor([rendered.labels], device=device)
        logits = model(input_ids=ids).logits[:, :-1].float()
        target = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                ignore_index=IGNORE, reduction="sum")
        n = int((target != IGNORE).sum())
        out.append({"tokens": n, "loss": float(nll) / n if n else math.nan})
    return out


def summarize_losses(losses: Sequence[dict], level: float = 0.95) -> dict[str, Any]:
    """Mean per-reference loss with a t interval over references, and the token-weighted loss."""
    values = [x["loss"] for x in losses if x["tokens"]]
    n = len(values)
    mean = sum(values) / n if n else math.nan
    lo, hi = t_interval(values, level=level) if n > 1 else (math.nan, math.nan)
    ci = [float(lo), float(hi)]
    tokens = sum(x["tokens"] for x in losses)
    weighted = sum(x["loss"] * x["tokens"] for x in losses if x["tokens"]) / tokens if tokens else math.nan
    return {"mean_loss": mean, "ci": ci, "token_weighted_loss": weighted, "references": n, "tokens": tokens}
