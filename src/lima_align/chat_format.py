"""The one chat format of lima-align: conversation -> token ids (+ loss labels), for training AND inference.

Layout (LIMA section 2): every utterance, user and assistant, is closed by a new special end-of-turn token EOT
(default :data:`EOT`), which halts generation like EOS without inheriting the pretrained EOS meaning::

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

A run's :class:`ChatFormat` is ONE value: ``TrainConfig.chat`` during training, then :func:`save_chat_format`
beside every checkpoint (``chat_format.json``) and :func:`load_chat_format` wherever a checkpoint is used
(generation, serving, the local judge), so inference renders exactly what the model was trained on.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from lima_align.config import ConfigError, from_dict
from lima_align.fileio import read_text, write_json

IGNORE = -100
EOT = "<|eot|>"
PAD_TOKEN = "<|pad|>"
TRAIN_ON = ("assistant", "all")
FORMAT_FILE = "chat_format.json"  # beside every checkpoint
# A checkpoint's run record (config, data report, versions), written by lima_align.train.checkpoint. It is named
# here, below train/, because checkpoints written before FORMAT_FILE existed keep their format only in it.
RUN_INFO = "lima-run.json"


@dataclass(frozen=True)
class ChatFormat:
    """How conversations become text: the EOT token, role prefixes, what is supervised, the trim length."""

    eot: str = EOT
    user_prefix: str = ""
    assistant_prefix: str = ""
    train_on: str = "assistant"  # "assistant" (response tokens + their EOT) or "all"
    max_len: int | None = 2048  # trim training conversations to this many tokens (None: never trim)

    def __post_init__(self) -> None:
        if not self.eot:
            raise ValueError("eot must be a non-empty token string")
        if self.train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be 'assistant' or 'all', got {self.train_on!r}")
        if self.max_len is not None and self.max_len < 8:
            raise ValueError(f"max_len must be >= 8, got {self.max_len}")


def save_chat_format(fmt: ChatFormat, folder: str | Path) -> Path:
    """Write ``fmt`` as ``folder/chat_format.json`` (atomically); returns the file."""
    path = Path(folder) / FORMAT_FILE
    write_json(path, dataclasses.asdict(fmt))
    return path


def load_chat_format(folder: str | Path) -> ChatFormat | None:
    """The format saved beside a checkpoint, or None for a folder (or hub id) that is not a lima-align checkpoint.

    Checkpoints written before ``chat_format.json`` existed have it only as keys of the run config in
    ``lima-run.json`` (flat: ``eot``, ``user_prefix``, ...); those load too.
    """
    root = Path(folder)
    saved, run_info = root / FORMAT_FILE, root / RUN_INFO
    if saved.is_file():
        return from_dict(ChatFormat, _read_json(saved), where=str(saved))
    if not run_info.is_file():
        return None
    config = _read_json(run_info).get("config", {})
    values = config.get("chat")
    if not isinstance(values, dict):  # the old flat TrainConfig
        values = {f.name: config[f.name] for f in dataclasses.fields(ChatFormat) if f.name in config}
    return from_dict(ChatFormat, values, where=f"{run_info} (config)")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


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
    ids: list[int] = list(bos_prefix(tokenizer))
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


def encode_text(text: str, tokenizer: Any) -> list[int]:
    """The ids of a prompt that is NOT in the chat format (an in-context prompt for a base model): BOS as
    :func:`render` writes it, then ``text`` as it is (no EOT, no role prefixes)."""
    return list(bos_prefix(tokenizer)) + _encode(tokenizer, text)


def render_text(turns: Sequence[str], tokenizer: Any, fmt: ChatFormat = ChatFormat(), *,
                add_generation_prompt: bool = False) -> str:
    """The rendered conversation as one string (what the HF chat template produces)."""
    bos = tokenizer.bos_token if bos_prefix(tokenizer) else ""
    parts = [bos]
    for i, text in enumerate(turns):
        prefix = fmt.assistant_prefix if i % 2 else fmt.user_prefix
        parts.append(prefix + text + fmt.eot)
    if add_generation_prompt:
        parts.append(fmt.assistant_prefix)
    return "".join(parts)


def chat_template(tokenizer: Any, fmt: ChatFormat = ChatFormat()) -> str:
    """A Jinja chat template for ``tokenizer.apply_chat_template`` that reproduces :func:`render` exactly."""
    bos = json.dumps(tokenizer.bos_token) if bos_prefix(tokenizer) else '""'
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


def bos_prefix(tokenizer: Any) -> list[int]:
    """[bos_id] when the tokenizer prepends BOS by default, else []."""
    if tokenizer.bos_token_id is None:
        return []
    ids = tokenizer("a")["input_ids"]
    return [tokenizer.bos_token_id] if ids and ids[0] == tokenizer.bos_token_id else []
