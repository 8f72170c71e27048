"""Authored examples: the Markdown and YAML formats, errors with file and line, the style linter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lima_align.cli import main
from lima_align.errors import DataError
from lima_align.sources import authored

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "authored"


def test_fixture_folder_to_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, rep = tmp_path / "a.jsonl", tmp_path / "a.report.json"
    assert main(["curate", "authored", str(FIX), "--out", str(out), "--report", str(rep),
                 "--license", "CC BY-NC-SA 4.0"]) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"authored-boil-egg", "authored-lockpick-refusal", "authored-dev-haiku",
                         "authored-list-first"}
    assert len(rows["authored-boil-egg"]["conversations"]) == 4
    assert rows["authored-lockpick-refusal"]["meta"]["safety"] == "refusal"
    assert rows["authored-dev-haiku"]["conversations"] == ["Write a haiku about autumn rain."]
    assert all(r["meta"]["license"] == "CC BY-NC-SA 4.0" for r in rows.values())
    report = json.loads(rep.read_text())
    assert report["kept"] == report["considered"] == 4 and report["safety_tagged"] == 1
    assert report["warnings"] == {"no_lead_in": 1, "too_short": 2}  # list-first twice; boil-egg's 2nd answer
    assert "examples.yaml:17: no_lead_in" in capsys.readouterr().err


@pytest.mark.parametrize("text, line, match", [
    ("---\nid: x\nsplt: dev\n---\n## User\nHi\n## Assistant\nHello", 3, "unknown field"),
    ("---\nid: [x\n---\n## User\nHi", 2, "invalid YAML"),
    ("## User\nHi\n## User\nAgain", 3, "expected '## Assistant'"),
    ("Intro\n## User\nHi", 1, "text before"),
    ("## User\nHi\n## Assistant\n\n", 3, "empty turn"),
    ("## User\nHi", 1, "must end with an assistant turn"),
    ("---\nsafety: toxic\n---\n## User\nHi\n## Assistant\nNo.", 2, "safety must be"),
])
def test_markdown_errors_point_at_the_line(tmp_path: Path, text: str, line: int, match: str) -> None:
    path = tmp_path / "bad.md"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as info:
        authored.curate([path])
    assert info.value.path == str(path) and info.value.line == line


def test_yaml_errors_point_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- id: a\n  turns:\n    - user: Hi\n    - user: Again\n")
    with pytest.raises(DataError, match=r"bad.yaml:4: field 'turns\[1\]'"):
        authored.curate([path])
    path.write_text("- id: a\n  prompt: Hi\n  response: Hello\n- id: a\n  prompt: Hi again\n  response: Yo\n")
    with pytest.raises(DataError, match="duplicate id"):
        authored.curate([path])


def test_linter() -> None:
    long_ok = "Good question: here is how it works. " + "word " * 60
    assert authored.lint(long_ok) == []
    codes = [c for c, _ in authored.lint("When I was young I used to do this. https://x.org")]
    assert codes == ["first_person_anecdote", "link_only", "too_short"]
    assert authored.lint("# Title\n" + "word " * 60)[0][0] == "no_lead_in"
