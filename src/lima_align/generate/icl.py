"""The in-context alignment arm: an UNTUNED base model answers when its prompt shows it how (URIAL-style, Lin et
al. 2023, "The Unlocking Spell on Base LLMs"). No training at all: a short system preamble and K fixed example
conversations come before each question, and the model continues the pattern.

An :class:`ICLPrompt` is data, one YAML file per prompt (``configs/icl/``)::

    name: urial-style-3          # what output rows call it
    version: "1"                 # bumped whenever the text changes
    preamble: |                  # the system text, first in every prompt
      Below are conversations ...
    user_tag: "# User:"          # the turn markers (defaults shown)
    assistant_tag: "# Assistant:"
    examples:                    # K conversations: turns alternate user / assistant, user first, answer last
      - - How do I ...?
        - |
          1. First ...

:meth:`ICLPrompt.render` lays a question out after the examples, each turn under its tag, blocks apart by a
blank line, and ends on the assistant tag so that the model's continuation is the answer::

    <preamble>

    # User:
    <example 1, turn 1>

    # Assistant:
    <example 1, turn 2>

    ...

    # User:
    <the question>

    # Assistant:

A base model has no end-of-turn token; once its answer is done it goes on with the next turn of the pattern.
:attr:`ICLPrompt.stop_strings` (a tag at the start of a line) mark that boundary: the engines stop there and
:meth:`ICLPrompt.cut_at_stop` cuts the text before it. :meth:`ICLPrompt.fingerprint` hashes the text (and the
version) into the provenance each output row carries.

Writing your own: keep the examples few (three is plenty for a 2k-token context), varied in task and length, and
written the way the answers should be; no line of any turn may start with a tag.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lima_align.config import ConfigError, from_dict, read_yaml
from lima_align.generate.decoding import find_stop

BLOCK_SEP = "\n\n"  # between the preamble and each turn


@dataclass(frozen=True)
class ICLPrompt:
    """A preamble, two turn tags and K example conversations: the whole in-context prompt of a base model."""

    name: str = ""
    version: str = ""
    preamble: str = ""
    user_tag: str = "# User:"
    assistant_tag: str = "# Assistant:"
    examples: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        for key in ("name", "version", "preamble"):
            if not getattr(self, key).strip():
                raise ValueError(f"'{key}' is missing or empty")
        self._check_tags()
        if not self.examples:
            raise ValueError("'examples' needs at least 1 example conversation")
        self._check_no_tag_at_line_start(self.preamble, "the preamble")
        for k, turns in enumerate(self.examples, 1):
            if len(turns) < 2 or len(turns) % 2:
                raise ValueError(f"example {k} has {len(turns)} turn(s); an example alternates user and assistant "
                                 f"turns, user first, and ends with an assistant answer (an even number, >= 2)")
            for i, text in enumerate(turns, 1):
                where = f"example {k}, turn {i} ({'assistant' if i % 2 == 0 else 'user'})"
                if not text.strip():
                    raise ValueError(f"{where} is empty")
                self._check_no_tag_at_line_start(text, where)

    def _check_tags(self) -> None:
        for key in ("user_tag", "assistant_tag"):
            tag = getattr(self, key)
            if not tag.strip() or tag != tag.strip() or "\n" in tag:
                raise ValueError(f"'{key}' must be one line of text without surrounding whitespace, got {tag!r}")
        user, assistant = self.user_tag, self.assistant_tag
        if user.startswith(assistant) or assistant.startswith(user):
            raise ValueError(f"the tags {user!r} and {assistant!r} must differ, neither beginning the other")

    def _check_no_tag_at_line_start(self, text: str, where: str) -> None:
        for line in text.splitlines():
            for tag in (self.user_tag, self.assistant_tag):
                if line.lstrip().startswith(tag):
                    raise ValueError(f"{where} has a line starting with the tag {tag!r}; the model would read it "
                                     f"as the start of a new turn")

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Where a next turn would begin in a continuation: either tag at the start of a line."""
        return ("\n" + self.user_tag, "\n" + self.assistant_tag)

    def _blocks(self, turns: Sequence[str]) -> list[str]:
        tags = (self.user_tag, self.assistant_tag)
        return [f"{tags[i % 2]}\n{self.guard(text.strip())}" for i, text in enumerate(turns)]

    def guard(self, text: str) -> str:
        """``text`` with a space before each line that starts with a tag: a question cannot fake a turn of the
        layout (the examples are refused such lines when loaded, so only asked turns ever change)."""
        tags = (self.user_tag, self.assistant_tag)
        return "\n".join(" " + line if line.startswith(tags) else line for line in text.split("\n"))

    def prefix(self) -> str:
        """The part every prompt shares: the preamble and the K examples (no trailing separator)."""
        blocks = [self.preamble.strip()]
        for turns in self.examples:
            blocks += self._blocks(turns)
        return BLOCK_SEP.join(blocks)

    def render(self, turns: Sequence[str]) -> str:
        """The base-model prompt for a conversation so far (user first, ending on a user turn): the preamble,
        the examples, then ``turns``, ending on the assistant tag (the model writes the line break and the answer).
        """
        if not turns or len(turns) % 2 == 0:
            raise ValueError(f"the conversation to answer must end on a user turn; it has {len(turns)} turn(s)")
        return BLOCK_SEP.join([self.prefix(), *self._blocks(turns), self.assistant_tag])

    def cut_at_stop(self, text: str) -> tuple[str, bool]:
        """A continuation cut before its first stop string, and whether it had one.

        The whitespace around what is kept goes too: it is the layout's (the line break after the assistant tag,
        the blank line before the next tag), not the answer's.
        """
        at = find_stop(text, self.stop_strings)
        return (text if at < 0 else text[:at]).strip(), at >= 0

    def fingerprint(self) -> str:
        """sha256 of the version and everything the model reads (preamble, examples, tags): provenance."""
        blob = json.dumps([self.version, self.user_tag, self.assistant_tag, self.prefix()], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def meta(self, file: str | Path) -> dict[str, Any]:
        """What an output row records of the prompt it was answered with (``meta["icl"]``)."""
        return {"file": str(file), "name": self.name, "version": self.version, "examples": len(self.examples),
                "fingerprint": self.fingerprint()}


def load_icl(path: str | Path) -> ICLPrompt:
    """The :class:`ICLPrompt` of a YAML file; every problem is a :class:`~lima_align.config.ConfigError` that
    names the file and what is wrong."""
    raw = read_yaml(path)
    _check_example_shapes(raw.get("examples"), path)
    return from_dict(ICLPrompt, raw, where=str(path))


def _check_example_shapes(examples: Any, path: str | Path) -> None:
    """Examples must be lists of strings as written: the generic loader would split a string at its commas and
    print a mapping as text, so a wrongly shaped example is refused here."""
    if examples is None:
        return  # missing: ICLPrompt says so
    if not isinstance(examples, list):
        raise ConfigError(f"{path}: 'examples' must be a list of conversations, got {type(examples).__name__}")
    for k, turns in enumerate(examples, 1):
        if not isinstance(turns, list):
            raise ConfigError(f"{path}: example {k} must be a list of turns (user, assistant, ...), "
                              f"got {type(turns).__name__}")
        for i, text in enumerate(turns, 1):
            if not isinstance(text, str):
                raise ConfigError(f"{path}: example {k}, turn {i} must be text, got {type(text).__name__} "
                                  f"(a turn is its text alone; its role comes from its place)")
