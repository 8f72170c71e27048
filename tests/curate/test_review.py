"""The review queue driven by scripted input: accept / reject / edit, interruption and resume, $EDITOR."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from lima_align.conversation import Example
from lima_align.curate.review import decisions_path, review


def candidates() -> list[Example]:
    return [Example(f"c{i}", [f"Prompt {i}?", f"Hello, answer {i}."], "reddit_writingprompts", {"origin": "x"})
            for i in range(5)]


def script(*answers: str) -> "callable":
    it: Iterator[str] = iter(answers)

    def ask(prompt: str) -> str:
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None  # the terminal closed: an interruption

    return ask


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_decide_interrupt_and_resume(tmp_path: Path) -> None:
    out, shown = tmp_path / "accepted.jsonl", []
    edit = lambda text: text.replace("Hello, answer 2.", "Thanks for asking! Here is answer 2.")  # noqa: E731
    counts = review(candidates(), out, ask=script("a", "r", "x", "e"), show=shown.append, edit=edit)
    assert (counts.accepted, counts.edited, counts.rejected, counts.pending) == (2, 1, 1, 2)
    assert any("please answer" in s for s in shown) and any("interrupted" in s for s in shown)
    assert [r["id"] for r in rows(out)] == ["c0", "c2"]
    assert rows(out)[1]["conversations"][1] == "Thanks for asking! Here is answer 2."
    assert rows(out)[1]["meta"]["review"] == "edited"
    assert len(rows(decisions_path(out))) == 3

    with decisions_path(out).open("a") as fh:  # a crash in the middle of writing a decision
        fh.write('{"id": "c3", "decis')
    shown.clear()
    counts = review(candidates(), out, ask=script("s", "a"), show=shown.append, edit=edit)
    assert shown[0].startswith("--- [4/5] c3")  # resumes at the first undecided candidate
    assert (counts.accepted, counts.rejected, counts.pending, counts.skipped) == (3, 1, 1, 1)
    assert [r["id"] for r in rows(out)] == ["c0", "c2", "c4"]
    counts = review(candidates(), out, ask=script("q"), show=shown.append, edit=edit)
    assert counts.this_session == 0 and counts.pending == 1


def test_bad_edit_keeps_candidate_pending(tmp_path: Path) -> None:
    out, shown = tmp_path / "a.jsonl", []
    counts = review(candidates()[:1], out, ask=script("e", "a"), show=shown.append,
                    edit=lambda text: "## Assistant\nno user turn")
    assert any("edit not saved" in s for s in shown) and counts.accepted == 1 and counts.edited == 0


def test_cli_with_real_editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lima_align.cli import review as review_cli
    import argparse

    src = tmp_path / "cands.jsonl"
    src.write_text("".join(json.dumps(ex.to_dict()) + "\n" for ex in candidates()[:2]))
    monkeypatch.setenv("EDITOR", "sed -i s/Hello/Howdy/")
    monkeypatch.delenv("VISUAL", raising=False)
    answers = iter(["e", "r"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    parser = argparse.ArgumentParser()
    review_cli.register(parser.add_subparsers())
    args = parser.parse_args(["review", str(src), "--out", str(tmp_path / "ok.jsonl")])
    assert args.func(args) == 0
    (row,) = rows(tmp_path / "ok.jsonl")
    assert row["conversations"] == ["Prompt 0?", "Howdy, answer 0."]
