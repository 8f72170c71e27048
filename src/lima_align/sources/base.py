"""What a source is: the :class:`Source` protocol, its result (:class:`Curated`) and the audit report shape.

A source turns raw files (dumps, scrapes, hand-written examples) into candidate examples plus an audit report that
accounts for every record it considered. Each source module (``stackexchange``, ``wikihow``, ...) implements the
protocol with a small class holding its name and its typed config; :mod:`lima_align.sources` registers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from lima_align.config import to_dict
from lima_align.conversation import Example, ReadReport
from lima_align.errors import LimaError

Progress = Callable[[int], None]


@dataclass
class Curated:
    """A source's candidates, its audit report (as written to the report JSON), and lines to show the user."""

    examples: list[Example]
    report: dict[str, Any]
    warnings: list[str] = field(default_factory=list)  # e.g. the authored examples' style warnings


class Source(Protocol):
    """One ``lima-align curate <name>`` source: its typed config and the curation itself (writes nothing)."""

    name: str  # the command: stackexchange, wikihow, reddit, natural-instructions, authored, dialogue
    config_type: type  # its config dataclass; defaults are the paper's
    negated: Mapping[str, str]  # flag option -> the boolean field it sets to False (no_progress -> progress)

    def curate(self, paths: Sequence[str | Path], config: Any, progress: Progress | None = None) -> Curated:
        """Candidates from ``paths`` with ``config``; ``progress`` is called with units done (bytes, for dumps)."""
        ...


class NothingKept(LimaError):
    """No candidate survived: the report was written; the message says what was rejected and where to look."""

    def __init__(self, command: str, message: str, report_path: Path, curated: Curated):
        self.command = command
        self.report_path = report_path
        self.curated = curated
        super().__init__(message)


def settings(paths: Sequence[str | Path], config: Any) -> dict[str, Any]:
    """The inputs and the config of a run, as the report records them."""
    return {"inputs": [str(p) for p in paths], **to_dict(config)}


def audit(source: str, read: ReadReport, run_settings: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The report of a single-pass source: what was considered, kept, rejected by reason, skipped as unreadable.

    ``kept + sum(rejected) + sum(skipped_bad) == considered`` by construction.
    """
    rejected = {k: v for k, v in read.dropped.most_common() if v}
    skipped = {k: v for k, v in read.skipped_bad.most_common() if v}
    considered = read.kept + sum(rejected.values()) + sum(skipped.values())
    return {"source": source, "settings": run_settings, "considered": considered, "kept": read.kept,
            "rejected": rejected, "skipped_bad": skipped, "first_bad": list(read.first_bad), **extra}
