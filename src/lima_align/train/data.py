"""Training data: read conversations, render them with the chat format, drop and count what cannot train."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

IGNORE_INDEX = -100

from lima_align.chat_format import ChatFormat, render
from lima_align.conversation import Example, OddTurns, ReadReport
from lima_align.formats.rows import read_examples


@dataclass
class DataReport:
    """What rendering kept, trimmed and dropped (by reason), and token counts."""

    read: dict[str, Any] = field(default_factory=dict)
    kept: int = 0
    trimmed: int = 0
    dropped: Counter = field(default_factory=Counter)
    tokens: int = 0
    supervised_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "kept": self.kept, "trimmed": self.trimmed, "dropped": dict(self.dropped),
                "tokens": self.tokens, "supervised_tokens": self.supervised_tokens}


class RenderedDataset(torch.utils.data.Dataset):
    """Rendered examples as ``{"input_ids", "labels"}`` lists (what the collators take)."""

    def __init__(self, items: list[dict[str, list[int]]], trimmed: list[bool] | None = None):
        self.items = items
        self.trimmed = trimmed if trimmed is not None else [False] * len(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]

    def lengths(self) -> list[int]:
        return [len(item["input_ids"]) for item in self.items]


def load_examples(path: str, fmt: str | None = None, max_examples: int | None = None,
                  max_chars: int | None = None) -> tuple[list[Example], ReadReport]:
    """Training examples of a file: prompt-only rows are dropped and counted; optional demo limits."""
    report = ReadReport()
    examples = read_examples(path, fmt, odd_turns=OddTurns.DROP, report=report)
    if max_chars is not None:
        kept = [ex for ex in examples if sum(len(t) for t in ex.conversations) <= max_chars]
        if len(kept) < len(examples):
            report.dropped[f"longer than max_chars={max_chars}"] += len(examples) - len(kept)
        examples = kept
    if max_examples is not None:
        examples = examples[:max_examples]
    return examples, report


def render_dataset(examples: list[Example], tokenizer: Any, fmt: ChatFormat) -> tuple[RenderedDataset, DataReport]:
    """Render every example; examples with no supervised token (e.g. the prompt alone fills max_len) are dropped."""
    report = DataReport()
    items, trimmed = [], []
    for ex in examples:
        rendered = render(ex.conversations, tokenizer, fmt)
        if rendered.n_supervised == 0:
            report.dropped["no supervised tokens (prompt fills max_len)"] += 1
            continue
        report.kept += 1
        report.trimmed += int(rendered.trimmed)
        report.tokens += len(rendered.input_ids)
        report.supervised_tokens += rendered.n_supervised
        items.append({"input_ids": rendered.input_ids, "labels": rendered.labels})
        trimmed.append(rendered.trimmed)
    return RenderedDataset(items, trimmed), report
