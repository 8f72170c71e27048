"""The sources of candidate examples, one module each, and the one way to run them.

``SOURCES`` maps each ``lima-align curate`` command to its :class:`~lima_align.sources.base.Source`;
:func:`source_config` turns a recipe's ``options`` mapping (the command's option names, e.g. ``min-score``) into
the source's typed config, and :func:`curate_to_files` runs a source and writes its conversation JSONL and audit
report. The ``curate`` command and the pipeline both go through these, so a recipe and a command line with the
same options give the same files.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

from lima_align.config import ConfigError, coerce, from_dict
from lima_align.errors import LimaError
from lima_align.fileio import write_json, write_jsonl
from lima_align.sources import authored, dialogue, natural_instructions, reddit, stackexchange, wikihow
from lima_align.sources.base import Curated, NothingKept, Progress, Source

__all__ = ["Curated", "NothingKept", "SOURCES", "Source", "curate_to_files", "default_report", "get_source",
           "option_names", "source_config"]

SOURCES: dict[str, Source] = {s.name: s for s in (
    stackexchange.StackExchangeSource(), wikihow.WikiHowSource(), reddit.RedditSource(),
    natural_instructions.NaturalInstructionsSource(), authored.AuthoredSource(), dialogue.DialogueSource())}
SET_BY_RUN = ("out", "report")


def get_source(command: str) -> Source:
    """The source of a ``curate`` command; a LimaError lists the known ones."""
    try:
        return SOURCES[command]
    except KeyError:
        raise LimaError(f"unknown source {command!r} (known: {', '.join(SOURCES)})") from None


def option_names(command: str) -> list[str]:
    """The option names a recipe may give the source (the command's options without the dashes)."""
    source = get_source(command)
    fields = [f.name for f in dataclasses.fields(source.config_type) if f.name not in source.negated.values()]
    return sorted(name.replace("_", "-") for name in [*fields, *source.negated])


def source_config(command: str, options: Mapping[str, Any], where: str = "options") -> Any:
    """The source's typed config from ``options``: ``{min-score: 3, no-progress: true, site: [a, b]}``.

    Keys are the command's option names, with dashes or underscores; a negated flag (``no-progress``) sets its
    field (``progress``) to the opposite. Unknown keys, ``out`` / ``report`` and values of the wrong type are
    ConfigErrors naming the source and the key.
    """
    source = get_source(command)
    where = f"{where} (curate {command})"
    hints = typing.get_type_hints(source.config_type)
    values: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, raw in options.items():
        name = key.replace("-", "_")
        if name in SET_BY_RUN:
            raise ConfigError(f"{where}: '{key}' is set by the run, not an option")
        field = source.negated.get(name, name)
        if field not in hints or (name == field and field in source.negated.values()):  # one name per option
            raise ConfigError(f"{where}: unknown option '{key}' (valid: {', '.join(option_names(command))})")
        if field in given:
            raise ConfigError(f"{where}: '{key}' and '{given[field]}' set the same option")
        given[field] = key
        values[field] = _typed(raw, hints[field], where, key, negate=name in source.negated)
    return from_dict(source.config_type, values, where=where)


def _typed(raw: Any, hint: Any, where: str, key: str, negate: bool) -> Any:
    """One option's value typed against its field (a list only for a list field)."""
    if isinstance(raw, (list, tuple, dict)) and typing.get_origin(hint) is not list:
        raise ConfigError(f"{where}: '{key}' takes one value, got {raw!r}")
    value = coerce(raw, hint, where, key)
    return not value if negate else value


def default_report(out: str | Path) -> Path:
    """Where the report of ``OUT.jsonl`` goes unless told: ``OUT.report.json``."""
    text = str(out)
    return Path((text[:-len(".jsonl")] if text.endswith(".jsonl") else text) + ".report.json")


def curate_to_files(command: str, paths: Sequence[str | Path], config: Any, out: str | Path,
                    report: str | Path | None = None, progress: Progress | None = None, *,
                    allow_empty: bool = False) -> Curated:
    """Run a source; write its audit report (default :func:`default_report`) and its conversation JSONL.

    When nothing is kept the report is still written, and :class:`NothingKept` is raised without writing ``out``
    (``allow_empty``: an empty ``out`` is written and returned instead, for the caller to decide).
    """
    source = get_source(command)
    if not isinstance(config, source.config_type):
        raise TypeError(f"curate {command} takes a {source.config_type.__name__}, got {type(config).__name__}")
    report_path = Path(report) if report is not None else default_report(out)
    curated = source.curate([paths] if isinstance(paths, (str, Path)) else list(paths), config, progress)
    if "settings" in curated.report:  # the single-pass sources' reports also say where they were written
        curated.report["settings"] = {"out": str(out), "report": str(report_path), **curated.report["settings"]}
    write_json(report_path, curated.report)
    if not curated.examples and not allow_empty:
        raise NothingKept(command, _nothing_kept(curated.report, report_path), report_path, curated)
    write_jsonl(out, (ex.to_dict() for ex in curated.examples))
    return curated


def _nothing_kept(report: dict[str, Any], path: Path) -> str:
    if "totals" in report:  # Stack Exchange counts questions, per site
        totals = report["totals"]
        return (f"no examples kept from {totals['questions_considered']} questions considered "
                f"(rejected: {totals['questions_rejected']}); see {path}")
    return (f"no examples kept from {report['considered']} considered "
            f"(rejected: {report['rejected']}, unreadable: {report['skipped_bad']}); see {path}")
