"""Table-1 statistics: per source, the number of examples and the average input and output tokens.

Input tokens are those of the user turns, output tokens those of the assistant turns (for multi-turn examples,
all of them), counted without special tokens. A prompt-only example counts its input and zero output, and is
reported separately so averages over responses stay honest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from lima_align.conversation import Example

_BATCH = 256


class TokenCounter(Protocol):
    """Counts tokens of many texts at once."""

    name: str

    def count(self, texts: list[str]) -> list[int]: ...


class WhitespaceCounter:
    """Whitespace-separated words: the fallback when no tokenizer is given."""

    name = "whitespace words"

    def count(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


class TokenizerCounter:
    """Tokens of a Hugging Face tokenizer, without special tokens (BOS/EOS are not content)."""

    def __init__(self, tokenizer: Any, name: str):
        self.tokenizer = tokenizer
        self.name = f"tokens ({name})"

    def count(self, texts: list[str]) -> list[int]:
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]


@dataclass
class _Totals:
    examples: int = 0
    prompt_only: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, n_in: int, n_out: int, prompt_only: bool) -> None:
        self.examples += 1
        self.prompt_only += int(prompt_only)
        self.input_tokens += n_in
        self.output_tokens += n_out

    def to_dict(self) -> dict[str, Any]:
        with_response = self.examples - self.prompt_only
        return {
            "examples": self.examples,
            "prompt_only": self.prompt_only,
            "avg_input_tokens": round(self.input_tokens / self.examples, 1) if self.examples else 0.0,
            "avg_output_tokens": round(self.output_tokens / with_response, 1) if with_response else 0.0,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }


@dataclass
class Table1:
    unit: str
    total: _Totals = field(default_factory=_Totals)
    sources: dict[str, _Totals] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "total": self.total.to_dict(),
                "sources": {name: t.to_dict() for name, t in sorted(self.sources.items())}}


def table1(examples: Iterable[Example], counter: TokenCounter | None = None) -> Table1:
    """Count examples and input/output tokens per source and in total."""
    counter = counter or WhitespaceCounter()
    result = Table1(unit=counter.name)
    batch: list[Example] = []
    for ex in examples:
        batch.append(ex)
        if len(batch) >= _BATCH:
            _add_batch(result, batch, counter)
            batch = []
    if batch:
        _add_batch(result, batch, counter)
    return result


def _add_batch(result: Table1, batch: list[Example], counter: TokenCounter) -> None:
    counts = iter(counter.count([turn for ex in batch for turn in ex.conversations]))
    for ex in batch:
        per_turn = [next(counts) for _ in ex.conversations]
        n_in, n_out = sum(per_turn[0::2]), sum(per_turn[1::2])
        result.total.add(n_in, n_out, ex.is_prompt_only)
        result.sources.setdefault(ex.source, _Totals()).add(n_in, n_out, ex.is_prompt_only)


def format_table(stats: Table1) -> str:
    """The statistics as a plain-text table shaped like the paper's Table 1."""
    header = ("source", "examples", "avg input", "avg output", "total tokens")
    rows = [(name, t.to_dict()) for name, t in sorted(stats.sources.items())] + [("total", stats.total.to_dict())]
    cells = [header] + [(name, f"{d['examples']:,}", f"{d['avg_input_tokens']:,.1f}",
                         f"{d['avg_output_tokens']:,.1f}", f"{d['total_tokens']:,}") for name, d in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for i, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0 or i == len(cells) - 2:
            lines.append("  ".join("-" * w for w in widths))
    prompt_only = stats.total.prompt_only
    note = f"counted in {stats.unit}"
    if prompt_only:
        note += f"; {prompt_only:,} prompt-only examples (averages of output are over examples with a response)"
    return "\n".join(lines + [note])
