"""Pre-flight checks run before any training step; each failure is a clear :class:`PreflightError`.

1. The EOT token exists and every (untrimmed) example supervises it: the model must learn to stop.
2. The prompt's tokens are an exact prefix of prompt+response tokens, and tokenizing the whole rendered text gives
   the same ids as our segment-wise rendering (no token merges across a boundary), so inference prompts built with
   the chat template match what the model was trained on.
3. No example has zero supervised tokens.
4. Under LoRA, the EOT embedding is trainable (a new token whose embedding stays at its initial mean would make the
   model unable to learn when to stop).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lima_align.chat_format import ChatFormat, eot_token_id, render, render_text
from lima_align.conversation import Example
from lima_align.errors import LimaError
from lima_align.train.data import IGNORE_INDEX, RenderedDataset


class PreflightError(LimaError):
    """A check that must pass before training can start."""


def check_dataset(dataset: RenderedDataset, tokenizer: Any, fmt: ChatFormat) -> None:
    """Checks 1 and 3 on the rendered training set."""
    if fmt.eot not in tokenizer.get_vocab():
        raise PreflightError(f"the tokenizer has no EOT token {fmt.eot!r}")
    eot = eot_token_id(tokenizer, fmt)
    for i, item in enumerate(dataset.items):
        labels = item["labels"]
        if all(t == IGNORE_INDEX for t in labels):
            raise PreflightError(f"example {i} has zero supervised tokens")
        if not dataset.trimmed[i] and eot not in labels:
            raise PreflightError(f"example {i}: EOT {fmt.eot!r} (id {eot}) is not in its labels; the model "
                                 "would never learn to stop")


def check_prefix(examples: list[Example], tokenizer: Any, fmt: ChatFormat) -> None:
    """Check 2 on every example: prompt ids are a prefix of the full ids; whole-text tokenization matches."""
    for ex in examples:
        full = render(ex.conversations, tokenizer, dataclasses.replace(fmt, max_len=None)).input_ids
        prompt = render(ex.conversations[:1], tokenizer, fmt, add_generation_prompt=True).input_ids
        if full[:len(prompt)] != prompt:
            raise PreflightError(f"example {ex.id}: the prompt's tokens are not a prefix of prompt+response "
                                 "tokens (the assistant prefix merges with the response); change assistant_prefix")
        whole = tokenizer(render_text(ex.conversations, tokenizer, fmt), add_special_tokens=False)["input_ids"]
        if list(whole) != full:
            raise PreflightError(f"example {ex.id}: tokenizing the rendered text gives other ids than rendering "
                                 "turn by turn (tokens merge across a turn boundary); the chat template would "
                                 "not reproduce the training prompts")


def check_eot_trainable(model: Any, tokenizer: Any, fmt: ChatFormat) -> None:
    """Check 4: the EOT embedding receives updates (full fine-tuning, modules_to_save or trainable tokens)."""
    eot = eot_token_id(tokenizer, fmt)
    if model.get_input_embeddings().weight.requires_grad:
        return
    for module in model.modules():
        indices = getattr(module, "token_indices", None)
        if isinstance(indices, dict) and any(eot in list(v) for v in indices.values()):
            if any(p.requires_grad for p in module.parameters()):
                return
    raise PreflightError(f"the EOT embedding (token {fmt.eot!r}, id {eot}) is frozen: with LoRA, train it via "
                         "peft trainable_token_indices or modules_to_save")


def run_preflight(examples: list[Example], dataset: RenderedDataset, tokenizer: Any, model: Any,
                  fmt: ChatFormat) -> None:
    """All pre-flight checks, in order."""
    check_dataset(dataset, tokenizer, fmt)
    check_prefix(examples, tokenizer, fmt)
    check_eot_trainable(model, tokenizer, fmt)
