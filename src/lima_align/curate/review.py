"""The review queue: accept, reject or edit candidates one by one; resumable; accepted examples to a JSONL file.

Decisions are appended to a log beside the output (``OUT.decisions.jsonl``, one JSON object a line, flushed and
synced as each is made), so an interrupted session loses nothing: the next run skips every candidate already
decided. The accepted file is rebuilt from the log (in candidate order) at the end of every session, including an
interrupted one. An edit opens the candidate's turns as ``## User`` / ``## Assistant`` Markdown in ``$EDITOR``;
the edited turns replace the candidate's and ``meta.review`` records ``edited``. "skip" leaves a candidate
pending for a later session.

The terminal is injected (``ask``, ``show``, ``edit`` callables) so that the queue runs under scripted input.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lima_align.conversation import Example
from lima_align.errors import DataError, LimaError
from lima_align.fileio import iter_jsonl, write_jsonl
from lima_align.formats.turns import parse_turns, render_turns

PROMPT = "[a]ccept  [r]eject  [e]dit  [s]kip  [q]uit > "
KEYS = {"a": "accept", "r": "reject", "e": "edit", "s": "skip", "q": "quit"}


@dataclass
class Counts:
    """What a session (plus the earlier ones in the log) decided."""

    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    skipped: int = 0
    pending: int = 0
    this_session: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"accepted {self.accepted} (edited {self.edited}), rejected {self.rejected}, "
                f"pending {self.pending} (skipped now {self.skipped}); decided this session: {self.this_session}")


def decisions_path(out: str | Path) -> Path:
    """Where the decision log of an output file lives."""
    out = Path(out)
    return out.with_name(out.name + ".decisions.jsonl")


def load_decisions(path: Path) -> dict[str, dict[str, Any]]:
    """The last decision per candidate id in a log (a truncated last line, from a crash, is ignored)."""
    decided: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return decided
    for _, rec in iter_jsonl(path, on_error=lambda exc: None):
        if isinstance(rec, dict) and "id" in rec and rec.get("decision") in ("accept", "reject", "edit"):
            decided[str(rec["id"])] = rec
    return decided


def _end_partial_line(path: Path) -> None:
    """Close a half-written last line (a crash mid-write) so that the next decision starts on a line of its own."""
    if path.exists() and path.stat().st_size:
        with path.open("rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def render(ex: Example, position: int, total: int) -> str:
    """A candidate as shown in the terminal."""
    origin = ex.meta.get("url") or ex.meta.get("origin", "")
    head = f"--- [{position}/{total}] {ex.id}  ({ex.source}; {origin})"
    return head + "\n" + render_turns(ex.conversations)


def editor_edit(text: str) -> str:
    """Open ``text`` in ``$VISUAL`` / ``$EDITOR`` (default ``vi``) and return the saved text."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False, encoding="utf-8") as fh:
        fh.write(text)
    try:
        result = subprocess.run([*shlex.split(editor), fh.name], check=False)
        if result.returncode != 0:
            raise LimaError(f"editor {editor!r} exited with code {result.returncode}")
        return Path(fh.name).read_text(encoding="utf-8")
    finally:
        os.unlink(fh.name)


def _ask_edit(ex: Example, edit: Callable[[str], str], show: Callable[[str], None]) -> list[str] | None:
    """Edited turns, or None when the edit does not parse (the error is shown, the candidate stays pending)."""
    try:
        return parse_turns(edit(render_turns(ex.conversations)), "<edited>")
    except DataError as exc:
        show(f"edit not saved: {exc}")
        return None


def review(candidates: list[Example], out: str | Path, *, ask: Callable[[str], str] | None = None,
           show: Callable[[str], None] = print, edit: Callable[[str], str] = editor_edit) -> Counts:
    """Run the queue over the undecided candidates; write the accepted ones to ``out``; return the counts.

    ``ask`` raising EOFError or KeyboardInterrupt ends the session like "quit": decisions made are kept.
    """
    ask = ask or input  # looked up at call time, so that a replaced builtins.input is used
    log = decisions_path(out)
    log.parent.mkdir(parents=True, exist_ok=True)
    decided = load_decisions(log)
    _end_partial_line(log)
    ids = [ex.id for ex in candidates]
    if len(set(ids)) != len(ids):
        raise LimaError("candidate ids are not unique; the review log could not tell candidates apart")
    counts = Counts()
    todo = [ex for ex in candidates if ex.id not in decided]
    try:
        for n, ex in enumerate(todo, start=len(candidates) - len(todo) + 1):
            record = _decide(ex, render(ex, n, len(candidates)), ask, show, edit)
            if record is None:
                counts.skipped += 1
                continue
            if record["decision"] == "quit":
                break
            _append(log, record)
            decided[ex.id] = record
            counts.this_session += 1
    except (EOFError, KeyboardInterrupt):
        show("interrupted: decisions so far are saved; run the same command again to resume")
    write_accepted(candidates, decided, out, counts)
    show(counts.summary())
    return counts


def _decide(ex: Example, shown: str, ask: Callable[[str], str], show: Callable[[str], None],
            edit: Callable[[str], str]) -> dict[str, Any] | None:
    """One candidate's decision record; None for skip."""
    show(shown)
    while True:
        action = KEYS.get(ask(PROMPT).strip().lower()[:1])
        if action is None:
            show("please answer a, r, e, s or q")
        elif action == "skip":
            return None
        elif action == "edit":
            turns = _ask_edit(ex, edit, show)
            if turns is not None:
                return {"id": ex.id, "decision": "edit", "conversations": turns}
        else:
            return {"id": ex.id, "decision": action}


def write_accepted(candidates: list[Example], decided: dict[str, dict[str, Any]], out: str | Path,
                   counts: Counts) -> None:
    """Write the accepted (and edited) candidates to ``out``, in candidate order; ``counts`` adds up the decisions.

    ``decided`` is the last decision per candidate id; ``meta.review`` says ``accepted`` or ``edited``.
    """
    accepted = []
    for ex in candidates:
        rec = decided.get(ex.id)
        if rec is None:
            counts.pending += 1
        elif rec["decision"] == "reject":
            counts.rejected += 1
        else:
            edited = rec["decision"] == "edit"
            turns = rec["conversations"] if edited else ex.conversations
            meta = {**ex.meta, "review": "edited" if edited else "accepted"}
            accepted.append(Example(ex.id, list(turns), ex.source, meta).to_dict())
            counts.accepted += 1
            counts.edited += edited
    write_jsonl(out, accepted)
