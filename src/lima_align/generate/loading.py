"""Load a checkpoint for generation with the chat format it was trained with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lima_align.chat_format import ChatFormat, add_special_tokens
from lima_align.errors import LimaError
from lima_align.models import load_model, load_tokenizer, resolve_model

RUN_INFO = "lima-run.json"  # written beside every training checkpoint


def chat_format_of(folder: str | Path) -> ChatFormat:
    """The chat format saved with a lima-align checkpoint (its run config), or the default one."""
    info_path = Path(folder) / RUN_INFO
    if not info_path.is_file():
        return ChatFormat()
    config = json.loads(info_path.read_text()).get("config", {})
    return ChatFormat(eot=config.get("eot", "<|eot|>"), user_prefix=config.get("user_prefix", ""),
                      assistant_prefix=config.get("assistant_prefix", ""))


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_for_generation(model: str, *, add_eot: bool = False, device: str | None = None) -> tuple[Any, Any, ChatFormat]:
    """Model, tokenizer and chat format of a checkpoint, ready to generate.

    A model that was not trained with lima-align has no EOT token: that is an error unless ``add_eot`` is set,
    which adds it (embedding = the mean of the pretrained rows), e.g. to compare a base model before tuning.
    """
    path = resolve_model(model)
    fmt = chat_format_of(path)
    tokenizer = load_tokenizer(model)
    dev = pick_device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    lm = load_model(model, dtype=dtype).to(dev)
    if fmt.eot not in tokenizer.get_vocab():
        if not add_eot:
            raise LimaError(f"{model}: the tokenizer has no {fmt.eot} token, so this is not a lima-align "
                            f"checkpoint and would never stop at the end of a turn; pass --add-eot to add one "
                            f"(e.g. to sample a base model before tuning)")
        add_special_tokens(tokenizer, lm, fmt)
    if tokenizer.pad_token_id is None:
        add_special_tokens(tokenizer, lm, fmt)
    return lm, tokenizer, fmt
