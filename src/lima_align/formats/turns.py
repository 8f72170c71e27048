"""The text format of a conversation's turns: ``## User`` / ``## Assistant`` Markdown headings, each followed by
its turn's text, alternating and starting with the user.

Authors write examples in it (:mod:`lima_align.sources.authored` adds front matter), and reviewers edit candidates
in it (``lima-align review``, the annotation app). Errors name the file (or ``<edited>``) and the line.
"""

from __future__ import annotations

import re
from pathlib import Path

from lima_align.errors import DataError

_HEADING = re.compile(r"^#{1,3}\s*(user|assistant)\s*$", re.IGNORECASE)


def parse_turns(text: str, origin: str | Path) -> list[str]:
    """The turns of ``## User`` / ``## Assistant`` Markdown (no front matter): the format editors work in."""
    return [t for t, _ in turns_with_lines(text.split("\n"), 0, Path(origin))]


def render_turns(turns: list[str]) -> str:
    """Turns as ``## User`` / ``## Assistant`` Markdown; :func:`parse_turns` reads it back."""
    return "\n\n".join(f"## {'User' if i % 2 == 0 else 'Assistant'}\n{t.strip()}" for i, t in enumerate(turns)) + "\n"


def turns_with_lines(lines: list[str], start: int, path: Path) -> list[tuple[str, int]]:
    """``(text, heading line)`` of each turn in ``lines[start:]`` (1-based lines, for errors in the caller)."""
    turns: list[tuple[str, int]] = []
    body: list[str] = []
    for i in range(start, len(lines)):
        m = _HEADING.match(lines[i].strip())
        if m:
            _close_turn(turns, body, path)
            expected = "user" if len(turns) % 2 == 0 else "assistant"
            if m.group(1).lower() != expected:
                raise DataError(f"expected '## {expected.title()}' (turns alternate, starting with the user)",
                                path, i + 1)
            turns.append(("", i + 1))
            body = []
        elif lines[i].strip() and not turns:
            raise DataError("text before the first '## User' heading", path, i + 1)
        else:
            body.append(lines[i])
    _close_turn(turns, body, path)
    return turns


def _close_turn(turns: list[tuple[str, int]], body: list[str], path: Path) -> None:
    if not turns:
        return
    text = "\n".join(body).strip()
    if not text:
        raise DataError("empty turn", path, turns[-1][1])
    turns[-1] = (text, turns[-1][1])
