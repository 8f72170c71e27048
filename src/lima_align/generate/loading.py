"""Load a checkpoint for generation with the chat format it was trained with."""

from __future__ import annotations

from typing import Any

import torch

from lima_align.chat_format import ChatFormat, add_special_tokens, load_chat_format
from lima_align.errors import LimaError
from lima_align.models import load_model, load_tokenizer, resolve_model


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_for_generation(model: str, *, add_eot: bool = False, allow_no_eot: bool = False,
                        device: str | None = None) -> tuple[Any, Any, ChatFormat]:
    """Model, tokenizer and chat format of a checkpoint, ready to generate.

    The format is the one saved beside the checkpoint (:func:`~lima_align.chat_format.load_chat_format`); a model
    that was not trained with lima-align (a base model, a hub id) gets the default one. Such a model has no EOT
    token: that is an error unless ``add_eot`` is set, which adds it (embedding = the mean of the pretrained rows),
    e.g. to compare a base model before tuning, or ``allow_no_eot``, which loads it untouched (an in-context prompt
    ends its answers with stop strings and EOS; no token is added, so the model is exactly the pretrained one).
    """
    path = resolve_model(model)
    fmt = load_chat_format(path) or ChatFormat()
    tokenizer = load_tokenizer(model)
    dev = pick_device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    lm = load_model(model, dtype=dtype).to(dev)
    if fmt.eot not in tokenizer.get_vocab():
        if allow_no_eot and not add_eot:
            return lm, tokenizer, fmt  # no pad token added either: the engine pads with EOS, masked out
        if not add_eot:
            raise LimaError(f"{model}: the tokenizer has no {fmt.eot} token, so this is not a lima-align "
                            f"checkpoint and would never stop at the end of a turn; pass --add-eot to add one "
                            f"(e.g. to sample a base model before tuning)")
        add_special_tokens(tokenizer, lm, fmt)
    if tokenizer.pad_token_id is None:
        add_special_tokens(tokenizer, lm, fmt)
    return lm, tokenizer, fmt
