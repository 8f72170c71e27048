"""Hand-written examples: an authoring format pleasant to write by hand -> conversation JSONL, plus a style linter.

Markdown, one example per file, YAML front matter then turns under ``## User`` / ``## Assistant`` headings (the
turns format of :mod:`lima_align.formats.turns`, which reviewers edit in too)::

    ---
    id: boil-egg            # optional (default: the file name)
    split: train            # train (default) | dev | test; dev/test may end on a user turn (prompt only)
    safety: refusal         # optional: refusal | sensitive (the paper's 13 refusals, 30 sensitive test prompts)
    tags: [cooking]
    ---
    ## User
    How do I boil an egg?

    ## Assistant
    Boiling an egg is easy once you know the timing. ...

YAML, many examples per file: a list of mappings with the same keys plus ``turns`` (a list of ``{user: ...}`` /
``{assistant: ...}``), or ``prompt`` and ``response``. Errors name the file and line.

The linter checks the paper's "uniform tone" (acknowledge the question, then answer) on assistant turns and
returns warnings, never errors: ``no_lead_in`` (the answer opens with a list, heading or code instead of a
sentence), ``first_person_anecdote``, ``link_only``, ``too_short`` (fewer than ``min_words`` words).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from lima_align.conversation import Example, ReadReport, provenance
from lima_align.errors import DataError
from lima_align.fileio import read_text
from lima_align.formats.turns import turns_with_lines
from lima_align.sources.base import Curated, Progress, audit, settings

SOURCE = "authored"
SPLITS = ("train", "dev", "test")
SAFETY = ("refusal", "sensitive")
KEYS = frozenset({"id", "split", "safety", "tags", "license", "author", "group", "notes"})
DEFAULT_LICENSE = "unspecified (set --license or 'license:' in the file)"
MIN_WORDS = 50
_LEAD_BREAK = re.compile(r"^\s*(?:[-*+]\s|\d+[.)]\s|#|```|\|)")
_ANECDOTE = re.compile(r"\b(?:I (?:once|remember|recall|used to|went|had|was|grew up)|when I was|"
                       r"my (?:wife|husband|mom|dad|mother|father|friend|kids?|own experience)|in my experience)\b",
                       re.IGNORECASE)
_URL = re.compile(r"https?://\S+|www\.\S+|\[[^\]]*\]\([^)]*\)")


@dataclass
class AuthoredConfig:
    """The options of ``curate authored`` (field = option name)."""

    license: str = DEFAULT_LICENSE  # licence of the authored texts (a file's 'license:' wins)
    min_words: int = MIN_WORDS  # answers shorter than this get a too_short warning
    seed: int = 0  # accepted like every source's; nothing is drawn at random
    # Accepted like every source's: hand-written files are fixed by their author, so an invalid example always
    # stops the run (the opposite of dumps, where a bad record is skipped and counted).
    strict: bool = False


@dataclass
class Warning_:
    """A style warning on one assistant turn."""

    path: str
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.code}: {self.message}"


def lint(text: str, min_words: int = MIN_WORDS) -> list[tuple[str, str]]:
    """Style warnings ``(code, message)`` for one assistant response."""
    out = []
    if _LEAD_BREAK.match(text):
        out.append(("no_lead_in", "opens with a list, heading, table or code; acknowledge the question first"))
    if _ANECDOTE.search(text):
        out.append(("first_person_anecdote", "tells a first-person anecdote; answer in the assistant's voice"))
    prose = _URL.sub("", text)
    if _URL.search(text) and len(prose.split()) < 15:
        out.append(("link_only", "mostly links; answer in the text itself"))
    if len(text.split()) < min_words:
        out.append(("too_short", f"{len(text.split())} words (< {min_words})"))
    return out


def _loader(text: str) -> yaml.SafeLoader:
    return yaml.SafeLoader(text)


def _compose(text: str, path: Path, line0: int) -> tuple[yaml.SafeLoader, Any]:
    loader = _loader(text)
    try:
        return loader, loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = line0 + (mark.line if mark else 0)
        raise DataError(f"invalid YAML: {exc.problem or exc}", path, line) from None


def _mapping(loader: yaml.SafeLoader, node: Any, path: Path, line0: int) -> tuple[dict[str, Any], dict[str, int]]:
    """A mapping node as a dict, and each key's line (for errors)."""
    if not isinstance(node, yaml.MappingNode):
        raise DataError("expected a mapping (key: value)", path, line0 + (node.start_mark.line if node else 0))
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        data[key] = loader.construct_object(value_node, deep=True)
        lines[key] = line0 + key_node.start_mark.line
    return data, lines


def _check_fields(data: dict[str, Any], lines: dict[str, int], path: Path, extra: frozenset[str]) -> None:
    for key in data:
        if key not in KEYS | extra:
            raise DataError(f"unknown field (known: {', '.join(sorted(KEYS | extra))})", path, lines[key], key)
    if data.get("split", "train") not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}", path, lines.get("split"), "split")
    if data.get("safety") is not None and data["safety"] not in SAFETY:
        raise DataError(f"safety must be one of {', '.join(SAFETY)}", path, lines.get("safety"), "safety")
    if not isinstance(data.get("tags", []), list):
        raise DataError("expected a list", path, lines.get("tags"), "tags")


def read_markdown(path: str | Path) -> tuple[dict[str, Any], list[tuple[str, int]], dict[str, int]]:
    """Front matter, turns ``(text, heading line)`` and key lines of a Markdown example file."""
    p = Path(path)
    lines = read_text(p).split("\n")
    fields: dict[str, Any] = {}
    key_lines: dict[str, int] = {}
    start = 0
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is None:
            raise DataError("front matter opened with '---' is never closed", p, 1)
        if any(ln.strip() for ln in lines[1:end]):
            loader, node = _compose("\n".join(lines[1:end]), p, 2)
            fields, key_lines = _mapping(loader, node, p, 2)
        start = end + 1
    return fields, turns_with_lines(lines, start, p), key_lines


def read_yaml(path: str | Path) -> list[tuple[dict[str, Any], list[tuple[str, int]], dict[str, int]]]:
    """Each example of a YAML file as (fields, turns with lines, key lines)."""
    p = Path(path)
    loader, root = _compose(read_text(p), p, 1)
    if root is None:
        raise DataError("empty file", p, 1)
    items = root.value if isinstance(root, yaml.SequenceNode) else [root]
    return [_yaml_example(loader, item, p) for item in items]


def _yaml_example(loader: yaml.SafeLoader, node: Any, path: Path) -> tuple[dict[str, Any], list, dict[str, int]]:
    data, lines = _mapping(loader, node, path, 1)
    _check_fields(data, lines, path, frozenset({"turns", "prompt", "response"}))
    if "turns" in data:
        if not isinstance(data["turns"], list):
            raise DataError("expected a list of {user: ...} / {assistant: ...}", path, lines["turns"], "turns")
        turn_nodes = dict((k.value, v) for k, v in node.value)["turns"].value
        turns = []
        for i, (turn, tnode) in enumerate(zip(data["turns"], turn_nodes)):
            expected = "user" if i % 2 == 0 else "assistant"
            if not isinstance(turn, dict) or list(turn) != [expected] or not isinstance(turn[expected], str):
                raise DataError(f"expected '{expected}: <text>' (turns alternate, starting with the user)",
                                path, tnode.start_mark.line + 1, f"turns[{i}]")
            turns.append((turn[expected].strip(), tnode.start_mark.line + 1))
    elif "prompt" in data:
        turns = [(str(data["prompt"]).strip(), lines["prompt"])]
        if data.get("response") is not None:
            turns.append((str(data["response"]).strip(), lines["response"]))
    else:
        raise DataError("an example needs 'turns' or 'prompt'", path, node.start_mark.line + 1)
    for text, line in turns:
        if not text:
            raise DataError("empty turn", path, line)
    return {k: v for k, v in data.items() if k not in ("turns", "prompt", "response")}, turns, lines


def build(fields: dict[str, Any], turns: list[tuple[str, int]], key_lines: dict[str, int], path: Path,
          index: int, license: str) -> Example:
    """A validated example: train examples must end with an assistant turn."""
    _check_fields(fields, key_lines, path, frozenset())
    split = fields.get("split", "train")
    if not turns:
        raise DataError("no turns ('## User' / '## Assistant' headings)", path, 1)
    if split == "train" and len(turns) % 2 == 1:
        raise DataError("a train example must end with an assistant turn (dev/test may be prompt-only)",
                        path, turns[-1][1])
    ex_id = str(fields.get("id") or (path.stem if index == 0 else f"{path.stem}-{index}"))
    curation: dict[str, Any] = {"split": split, "tags": list(fields.get("tags") or [])}
    for key in ("author", "group", "notes"):
        if fields.get(key) is not None:
            curation[key] = fields[key]
    meta = provenance(path.name, str(fields.get("license") or license), source_id=ex_id, **curation)
    if fields.get("safety"):
        meta["safety"] = fields["safety"]
    return Example(id=f"authored-{ex_id}", conversations=[t for t, _ in turns], source=SOURCE, meta=meta)


def example_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Markdown and YAML files named, or found (recursively, sorted) in named directories."""
    suffixes = (".md", ".markdown", ".yaml", ".yml")
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in suffixes and f.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise DataError("no such file or directory", p)
    return out


def curate(inputs: Iterable[str | Path], *, license: str = DEFAULT_LICENSE, min_words: int = MIN_WORDS,
           skip_bad: bool = False) -> tuple[list[Example], ReadReport, list[Warning_]]:
    """Examples from authored files, with style warnings; an invalid example raises (or is counted, ``skip_bad``)."""
    report, examples, warnings = ReadReport(), [], []
    seen: dict[str, str] = {}
    for path in example_files(inputs):
        try:
            parsed = read_yaml(path) if path.suffix.lower() in (".yaml", ".yml") else [read_markdown(path)]
            for i, (fields, turns, key_lines) in enumerate(parsed):
                ex = build(fields, turns, key_lines, path, i, license)
                if ex.id in seen:
                    raise DataError(f"duplicate id '{ex.id}' (first in {seen[ex.id]})", path, turns[0][1], "id")
                seen[ex.id] = path.name
                examples.append(ex)
                warnings += [Warning_(str(path), line, code, msg) for j, (text, line) in enumerate(turns)
                             if j % 2 == 1 for code, msg in lint(text, min_words)]
        except DataError as exc:
            if not skip_bad:
                raise
            report.skip_bad(exc)
    report.kept = len(examples)
    return examples, report, warnings


class AuthoredSource:
    """``curate authored``: the :class:`~lima_align.sources.base.Source` of hand-written examples."""

    name = "authored"
    config_type = AuthoredConfig
    negated: dict[str, str] = {}

    def curate(self, paths: Sequence[str | Path], config: AuthoredConfig,
               progress: Progress | None = None) -> Curated:
        examples, read, warnings = curate(paths, license=config.license, min_words=config.min_words,
                                          skip_bad=False)
        counts: dict[str, int] = {}
        for w in warnings:
            counts[w.code] = counts.get(w.code, 0) + 1
        safety = sum(1 for ex in examples if ex.meta.get("safety"))
        extra = {"unit": "example", "warnings": counts, "safety_tagged": safety,
                 "warning_lines": [str(w) for w in warnings[:200]]}
        return Curated(examples, audit(self.name, read, settings(paths, config), extra), [str(w) for w in warnings])
