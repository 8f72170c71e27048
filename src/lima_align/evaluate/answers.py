"""Model answers to judge, read from generation outputs (``lima-align generate`` rows) or any conversation file
``lima-align data`` reads (e.g. AlpacaEval's ``model_outputs.json``), and paired across two models."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from lima_align.errors import DataError
from lima_align.fileio import iter_json_records
from lima_align.formats.rows import read_examples


@dataclass(frozen=True)
class Answer:
    """One answer: the prompt turns it answers (ending on a user turn), its text and who wrote it."""

    id: str
    sample: int
    turns: tuple[str, ...]
    text: str
    generator: str

    @property
    def question(self) -> str:
        """What the judge sees as the question: the prompt, or the conversation so far for a follow-up."""
        if len(self.turns) == 1:
            return self.turns[0]
        return format_history(self.turns)


def format_history(turns: tuple[str, ...] | list[str]) -> str:
    return "\n\n".join(f"{'User' if i % 2 == 0 else 'Assistant'}: {t}" for i, t in enumerate(turns))


def read_answers(path: str | Path, *, sample: int | None = None, generator: str | None = None) -> list[Answer]:
    """Answers of a file; ``sample`` keeps one sample index of generation outputs (None: all)."""
    answers = list(_iter_answers(Path(path), generator))
    if sample is not None:
        answers = [a for a in answers if a.sample == sample]
    if not answers:
        raise DataError("no answers (empty file, or no row with this sample index)", path)
    return answers


def _iter_answers(path: Path, generator: str | None) -> Iterator[Answer]:
    if path.suffix == ".jsonl" and _is_generation_output(path):
        for line, row in iter_json_records(path):
            output = row.get("output")
            convs = row.get("conversations")
            if not isinstance(output, str) or not isinstance(convs, list):
                raise DataError("expected a generation output row (output, conversations)", path, line)
            turns = convs[:-1] if output.strip() and len(convs) % 2 == 0 else convs
            yield Answer(str(row["id"]), int(row.get("sample", 0)), tuple(turns), output,
                         generator or str(row.get("generator") or path.stem))
        return
    for ex in read_examples(path):
        turns = ex.conversations if ex.is_prompt_only else ex.conversations[:-1]
        text = "" if ex.is_prompt_only else ex.conversations[-1]
        yield Answer(ex.id, 0, tuple(turns), text, generator or str(ex.meta.get("generator") or path.stem))


def _is_generation_output(path: Path) -> bool:
    for _line, row in iter_json_records(path):
        return isinstance(row, dict) and "output" in row and "sample" in row
    return False


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


@dataclass
class Pairing:
    pairs: list[tuple[Answer, Answer]]
    unmatched_a: int
    unmatched_b: int
    by: str  # "prompt" or "id"


def pair_answers(a: list[Answer], b: list[Answer]) -> Pairing:
    """Pair two models' answers to the same prompts: by prompt text (ids differ across files, e.g. AlpacaEval's
    outputs have none), or by id when no prompt text matches. The first answer per prompt is used."""
    for by, key in (("prompt", lambda x: _norm("\n".join(x.turns))), ("id", lambda x: x.id)):
        index: dict[str, Answer] = {}
        for ans in b:
            index.setdefault(key(ans), ans)
        pairs, seen = [], set()
        for ans in a:
            k = key(ans)
            if k in index and k not in seen:
                seen.add(k)
                pairs.append((ans, index[k]))
        if pairs:
            return Pairing(pairs, len(a) - len(pairs), len(index) - len(pairs), by)
    raise DataError("no prompt in common between the two answer files (neither by prompt text nor by id)")
