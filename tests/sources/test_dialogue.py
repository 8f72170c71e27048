"""Dialogue chains from a Stack Exchange dump fixture (Posts.xml + Comments.xml in the official dump schema)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lima_align.cli import main
from lima_align.errors import DataError
from lima_align.sources import dialogue

DUMP = Path(__file__).resolve().parents[1] / "fixtures" / "stackexchange" / "fixture_dialogue.stackexchange.com"


def test_chain_alternates_asker_and_answerer(tmp_path: Path) -> None:
    out, rep = tmp_path / "d.jsonl", tmp_path / "d.report.json"
    assert main(["curate", "dialogue", str(DUMP), "--out", str(out), "--report", str(rep)]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    turns = row["conversations"]
    assert len(turns) == 6 and len(turns) % 2 == 0  # the asker's last, unanswered comment is dropped
    assert turns[0].startswith("Why is my espresso sour?") and "+1" not in " ".join(turns)
    assert turns[2] == "Does that also hold for a light roast?"  # the @mention is gone
    assert "https://" not in turns[1] and row["meta"]["license"] == "CC BY-SA 4.0"
    report = json.loads(rep.read_text())
    assert report["considered"] == 5 and report["kept"] + sum(report["rejected"].values()) == 5
    assert report["rejected"] == {"no_answer": 2, "asker_unknown": 1, "no_follow_up": 1}


def test_longer_min_turns_and_missing_comments(tmp_path: Path) -> None:
    examples, report = dialogue.curate(DUMP, min_turns=8)
    assert examples == [] and report.dropped["no_follow_up"] == 2
    shutil.copy(DUMP / "Posts.xml", tmp_path / "Posts.xml")
    with pytest.raises(DataError, match="Comments.xml"):
        dialogue.curate(tmp_path)
    (tmp_path / "Comments.xml").write_text('<comments>\n<row Id="1" PostId="2" Text="x"\n')
    with pytest.raises(DataError, match=r"Comments.xml:\d"):
        dialogue.curate(tmp_path)
