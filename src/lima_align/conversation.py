"""The conversation data model shared by every stage, and its validation.

An example is ``{"id": str, "conversations": [user, assistant, user, ...], "source": str, "meta": {...}}``: a
superset of the public GAIR/lima rows (``conversations`` + ``source``), so those files load unchanged. Turns
alternate by position, starting with the user. An odd number of turns means the example ends on a user turn: a
prompt-only example (test sets) that training drops with a counted reason.

``meta`` carries provenance. The keys every source should fill (see :func:`provenance`):
``origin`` (site / subreddit / task / file), ``url`` and ``source_id`` when known, ``license``, and ``curation``
(the choices made, e.g. which field became the prompt).
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from lima_align.errors import DataError

USER = "user"
ASSISTANT = "assistant"


class OddTurns(str, enum.Enum):
    """What to do with an example whose last turn is the user's (no final response)."""

    KEEP = "keep"  # keep as a prompt-only example: test and dev sets, generation inputs
    DROP = "drop"  # drop and count: training sets


@dataclass
class Example:
    """One conversation: alternating user/assistant turns with its source and provenance."""

    id: str
    conversations: list[str]
    source: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The first user turn."""
        return self.conversations[0]

    @property
    def response(self) -> str | None:
        """The first assistant turn, or None for a prompt-only example."""
        return self.conversations[1] if len(self.conversations) > 1 else None

    @property
    def is_prompt_only(self) -> bool:
        """True when the conversation ends on a user turn (no response to learn)."""
        return len(self.conversations) % 2 == 1

    @property
    def user_turns(self) -> list[str]:
        return self.conversations[0::2]

    @property
    def assistant_turns(self) -> list[str]:
        return self.conversations[1::2]

    def messages(self) -> list[dict[str, str]]:
        """The turns as OpenAI-style ``{"role", "content"}`` messages."""
        return [{"role": role_of(i), "content": text} for i, text in enumerate(self.conversations)]

    def to_dict(self) -> dict[str, Any]:
        """The GAIR/lima-compatible row (with our ``id`` and ``meta`` added)."""
        return {"id": self.id, "conversations": list(self.conversations), "source": self.source,
                "meta": self.meta}


def role_of(turn_index: int) -> str:
    """Role of the turn at this position: even positions are the user's."""
    return USER if turn_index % 2 == 0 else ASSISTANT


def provenance(origin: str, license: str, *, url: str | None = None, source_id: str | None = None,
               **curation: Any) -> dict[str, Any]:
    """Build the ``meta`` provenance block every curated example carries.

    ``curation`` holds the choices made for this example (e.g. ``prompt_field="title"``).
    """
    meta: dict[str, Any] = {"origin": origin, "license": license}
    if url is not None:
        meta["url"] = url
    if source_id is not None:
        meta["source_id"] = str(source_id)
    if curation:
        meta["curation"] = dict(curation)
    return meta


@dataclass
class Where:
    """Location of a record, for error messages: file, 1-based line, 0-based record index."""

    path: str
    line: int | None = None
    index: int = 0

    def error(self, problem: str, field: str | None = None) -> DataError:
        return DataError(problem, self.path, self.line, field)

    def default_id(self) -> str:
        return f"{Path(self.path).stem}-{self.index:05d}"


@dataclass
class ReadReport:
    """What reading a file kept and dropped, by reason (never silent)."""

    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    skipped_bad: Counter = field(default_factory=Counter)
    first_bad: list[str] = field(default_factory=list)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def skip_bad(self, error: DataError) -> None:
        self.skipped_bad[error.problem] += 1
        if len(self.first_bad) < 5:
            self.first_bad.append(str(error))

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "dropped": dict(self.dropped), "skipped_bad": dict(self.skipped_bad),
                "first_bad": list(self.first_bad)}


def check_turns(turns: Any, where: Where, field_name: str = "conversations",
                turn_fields: list[str] | None = None) -> list[str]:
    """Validate a list of turns: a non-empty list of non-empty strings. Returns it as a list.

    ``turn_fields`` names the input field each turn came from (e.g. ``instruction``, ``output``) so that an
    error points at the field the user can see in their file.
    """
    if not isinstance(turns, list):
        raise where.error(f"expected a list of strings, got {type(turns).__name__}", field_name)
    if not turns:
        raise where.error("empty conversation", field_name)
    for i, text in enumerate(turns):
        name = turn_fields[i] if turn_fields and i < len(turn_fields) else f"{field_name}[{i}]"
        if not isinstance(text, str):
            raise where.error(f"expected a string, got {type(text).__name__}", name)
        if not text.strip():
            raise where.error(f"empty {role_of(i)} turn", name)
    return list(turns)


def turns_from_roles(roles_texts: Iterable[tuple[str, Any]], where: Where, field_name: str) -> list[str]:
    """Check that (role, text) pairs alternate user/assistant starting with the user; return the texts."""
    turns = []
    for i, (role, text) in enumerate(roles_texts):
        expected = role_of(i)
        if role != expected:
            raise where.error(f"expected role '{expected}' (turns alternate, starting with the user), "
                              f"got '{role}'", f"{field_name}[{i}]")
        turns.append(text)
    return check_turns(turns, where, field_name)


def make_example(turns: list[str], where: Where, *, id: Any = None, source: Any = None,
                 meta: Any = None, turn_fields: list[str] | None = None) -> Example:
    """Build a validated :class:`Example`; the id and source default to the file and position."""
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise where.error(f"expected an object, got {type(meta).__name__}", "meta")
    if source is None:
        source = Path(where.path).stem
    if not isinstance(source, str) or not source.strip():
        raise where.error("expected a non-empty string", "source")
    if id is None:
        id = where.default_id()
    if not isinstance(id, (str, int)) or isinstance(id, bool) or not str(id).strip():
        raise where.error("expected a non-empty string", "id")
    meta = dict(meta)
    meta.setdefault("origin", Path(where.path).name)
    return Example(id=str(id), conversations=check_turns(turns, where, turn_fields=turn_fields),
                   source=source, meta=meta)


def apply_odd_turns(example: Example, policy: OddTurns, report: ReadReport) -> Example | None:
    """Keep or drop (counting the reason) a prompt-only example, as the policy says."""
    if example.is_prompt_only and OddTurns(policy) is OddTurns.DROP:
        report.drop("odd number of turns (no final response)")
        return None
    return example
