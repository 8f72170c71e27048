"""The one chat format of lima-align: conversation -> token ids (+ loss labels), for training AND inference.

Layout (LIMA section 2): every utterance, user and assistant, is closed by a new special end-of-turn token EOT
(default ``<|eot|>``), which halts generation like EOS without inheriting the pretrained EOS meaning::

    [BOS] user_prefix + user_1 EOT assistant_prefix + assistant_1 EOT user_prefix + user_2 EOT ...

BOS is written only when the tokenizer adds one by default (Gemma, Llama do; SmolLM2 does not). Role prefixes are
empty by default (the paper uses none: roles alternate by position). Each segment is tokenized on its own and the
ids are concatenated, so the prompt tokens are always an exact prefix of prompt+response tokens; the pre-flight
check verifies that tokenizing the whole rendered string gives the same ids (no merge across a boundary), which is
also what :func:`chat_template` (the HF chat template saved with checkpoints) produces.

Loss labels: by default only assistant tokens and their EOT are supervised (user text, user EOT and BOS are -100);
``train_on="all"`` supervises every token. Conversations longer than ``max_len`` tokens (2,048 in the paper) are
trimmed from the end, i.e. the end of the last assistant turn goes first; :class:`Rendered` says whether it was.

:func:`add_special_tokens` adds EOT (and a dedicated pad token when the tokenizer has none or pads with EOS/EOT,
because collators that mask pad ids would otherwise mask every EOS/EOT: the known cause of models that never
stop) and resizes the embeddings, initialising each new row to the mean of the pretrained rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import torch

IGNORE = -100
PAD_TOKEN = "<|pad|>"


@dataclass(frozen=True)
class ChatFormat:
    """How conversations become text: the EOT token, role prefixes, what is supervised, the trim length."""

    eot: str = "<|eot|>"
    user_prefix: str = ""
    assistant_prefix: str = ""
    train_on: str = "assistant"  # "assistant" or "all"
    max_len: int | None = 2048


@dataclass
class Rendered:
    """Token ids of one conversation and their loss labels (``-100`` = not supervised)."""

    input_ids: list[int]
    labels: list[int]
    trimmed: bool = False

    @property
    def n_supervised(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


def render(turns: Sequence[str], tokenizer: Any, fmt: ChatFormat = ChatFormat(), *,
           add_generation_prompt: bool = False) -> Rendered:
    """Render alternating user/assistant turns (user first) to ids and labels. THE template and loss mask.

    For inference pass the turns so far (ending with a user turn) and ``add_generation_prompt=True``: the ids end
    where the assistant's reply starts. Inference prompts are never trimmed.
    """
    eot_id = eot_token_id(tokenizer, fmt)
    ids: list[int] = list(_bos(tokenizer))
    labels: list[int] = [IGNORE] * len(ids) if fmt.train_on == "assistant" else list(ids)
    for i, text in enumerate(turns):
        is_assistant = i % 2 == 1
        prefix = fmt.assistant_prefix if is_assistant else fmt.user_prefix
        segment = _encode(tokenizer, prefix + text) + [eot_id]
        ids += segment
        supervised = is_assistant or fmt.train_on == "all"
        labels += segment if supervised else [IGNORE] * len(segment)
    if add_generation_prompt:
        prompt = _encode(tokenizer, fmt.assistant_prefix) if fmt.assistant_prefix else []
        ids += prompt
        labels += [IGNORE] * len(prompt)
        return Rendered(ids, labels)
    trimmed = fmt.max_len is not None and len(ids) > fmt.max_len
    if trimmed:
        ids, labels = ids[:fmt.max_len], labels[:fmt.max_len]
    return Rendered(ids, labels, trimmed)


def render_text(turns: Sequence[str], tokenizer: Any, fmt: ChatFormat = ChatFormat(), *,
                add_generation_prompt: bool = False) -> str:
    """The rendered conversation as one string (what the HF chat template produces)."""
    bos = tokenizer.bos_token if _bos(tokenizer) else ""
    parts = [bos]
    for i, text in enumerate(turns):
        prefix = fmt.assistant_prefix if i % 2 else fmt.user_prefix
        parts.append(prefix + text + fmt.eot)
    if add_generation_prompt:
        parts.append(fmt.assistant_prefix)
    return "".join(parts)


def chat_template(tokenizer: Any, fmt: ChatFormat = ChatFormat()) -> str:
    """A Jinja chat template for ``tokenizer.apply_chat_template`` that reproduces :func:`render` exactly."""
    bos = json.dumps(tokenizer.bos_token) if _bos(tokenizer) else '""'
    user, assistant, eot = (json.dumps(s) for s in (fmt.user_prefix, fmt.assistant_prefix, fmt.eot))
    return (
        "{{- " + bos + " -}}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}{{- " + user + " -}}"
        "{%- elif message['role'] == 'assistant' -%}{{- " + assistant + " -}}"
        "{%- else -%}{{- raise_exception('lima-align chat format: roles are user and assistant only') -}}"
        "{%- endif -%}"
        "{{- message['content'] + " + eot + " -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- " + assistant + " -}}{%- endif -%}"
    )


def install_chat_template(tokenizer: Any, fmt: ChatFormat = ChatFormat()) -> None:
    """Set the tokenizer's chat template (saved with it) and make EOT its stop token for generation."""
    tokenizer.chat_template = chat_template(tokenizer, fmt)


def add_special_tokens(tokenizer: Any, model: Any | None, fmt: ChatFormat = ChatFormat()) -> list[int]:
    """Add EOT (and a dedicated pad token if needed) to the tokenizer; resize ``model``'s embeddings.

    New embedding rows (input and, when untied, output) are set to the mean of the pretrained rows, so the new
    tokens start as an "average" token rather than random noise. Returns the ids of the added tokens.
    """
    old_size = len(tokenizer)
    new_tokens = [fmt.eot] if fmt.eot not in tokenizer.get_vocab() else []
    if tokenizer.pad_token is None or tokenizer.pad_token in (tokenizer.eos_token, fmt.eot):
        new_tokens.append(PAD_TOKEN)
    if new_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": [fmt.eot]} if fmt.eot in new_tokens else {},
                                     replace_extra_special_tokens=False)
        if PAD_TOKEN in new_tokens:
            tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    added = list(range(old_size, len(tokenizer)))
    if model is not None and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        resize_embeddings(model, len(tokenizer))
    return added


def resize_embeddings(model: Any, new_size: int) -> None:
    """Grow the embedding matrices to ``new_size`` rows, new rows = mean of the old rows."""
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(new_size, mean_resizing=False)
    with torch.no_grad():
        for module in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings())
                       if m is not None}.values():
            weight = module.weight
            weight[old:] = weight[:old].mean(dim=0, keepdim=True).to(weight.dtype)


def eot_token_id(tokenizer: Any, fmt: ChatFormat = ChatFormat()) -> int:
    """Id of the EOT token; an error if :func:`add_special_tokens` has not added it."""
    token_id = tokenizer.get_vocab().get(fmt.eot)
    if token_id is None:
        raise ValueError(f"the tokenizer has no {fmt.eot!r} token: call chat_format.add_special_tokens first")
    return token_id


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _bos(tokenizer: Any) -> list[int]:
    """[bos_id] when the tokenizer prepends BOS by default, else []."""
    if tokenizer.bos_token_id is None:
        return []
    ids = tokenizer("a")["input_ids"]
    return [tokenizer.bos_token_id] if ids and ids[0] == tokenizer.bos_token_id else []
