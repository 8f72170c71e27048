"""Reddit source on the Pushshift-format fixtures (zstd and plain NDJSON) and the real WritingPrompts CSV."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lima_align.cli import main
from lima_align.conversation import ReadReport
from lima_align.errors import DataError
from lima_align.sources import reddit

zstandard = pytest.importorskip("zstandard")
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "pushshift"
RS, RC, ASK = FIX / "RS_fixture_writingprompts.zst", FIX / "RC_fixture_writingprompts.zst", FIX / "RS_fixture_askreddit.ndjson"


def run(tmp_path: Path, *argv: str) -> tuple[list[dict], dict]:
    out, rep = tmp_path / "r.jsonl", tmp_path / "r.report.json"
    assert main(["curate", "reddit", *argv, "--out", str(out), "--report", str(rep)]) == 0
    return [json.loads(x) for x in out.read_text().splitlines()], json.loads(rep.read_text())


def test_writingprompts_dumps_join_best_top_level_story(tmp_path: Path) -> None:
    rows, report = run(tmp_path, str(RC), str(RS))  # order of the arguments does not matter
    assert [r["id"] for r in rows] == ["reddit-writingprompts-wp1", "reddit-writingprompts-wp8"]
    assert rows[0]["meta"]["curation"]["story_id"] == "c1"  # the top-scoring top-level story, not the reply c3
    assert report["considered"] == 9 and report["kept"] + sum(report["rejected"].values()) == 9
    assert report["rejected"] == {"below_min_score": 1, "meta_post": 1, "not_story_prompt": 1,
                                  "deleted_or_removed": 1, "moderator_post": 1, "other_subreddit": 1,
                                  "no_story_reply": 1}
    assert report["comments"]["considered"] == 10
    for row in rows:
        prompt, story = row["conversations"]
        assert not re.match(r"\s*\[", prompt) and not re.search(r"https?://", story)
        assert 100 <= len(story.split()) <= 1000
        assert row["meta"]["license"] == reddit.LICENSE and row["meta"]["curation"]["needs_review"]
        assert row["meta"]["curation"]["prompt_score"] >= 100 and row["meta"]["curation"]["story_score"] >= 10


def test_askreddit_title_only_test_prompts(tmp_path: Path) -> None:
    rows, report = run(tmp_path, str(ASK), "--subreddit", "askreddit")
    assert [r["conversations"] for r in rows] == [["What's a skill everyone should learn?"],
                                                  ["What is the scariest thing that ever happened to you?"],
                                                  ["If animals could talk, which would be the rudest?"]]
    assert all(r["meta"]["curation"]["split"] == "test" for r in rows)
    assert report["kept"] == 3 and sum(report["rejected"].values()) == 6


def test_real_writingprompts_csv_is_detokenized(shared_data: Path, tmp_path: Path) -> None:
    rows, report = run(tmp_path, str(shared_data / "writingprompts" / "writingprompts_100.csv"))
    assert report["considered"] == 100 and report["kept"] + sum(report["rejected"].values()) == 100
    assert len(rows) == report["kept"] > 50
    for row in rows:
        prompt, story = row["conversations"]
        text = prompt + story
        assert not re.search(r"<newline>|\[ ?WP ?\]| n't\b| ,| \.(?!\.)| 're\b| 's\b", text), text[:200]
        assert 100 <= len(story.split()) <= 1000


def test_corrupt_and_truncated_zstd_name_the_file(tmp_path: Path) -> None:
    data = RS.read_bytes()
    corrupt = tmp_path / "RS_corrupt.zst"
    corrupt.write_bytes(data[:40] + bytes(40) + data[80:])
    with pytest.raises(DataError, match="RS_corrupt.zst.*corrupt zstd"):
        list(reddit.iter_ndjson(corrupt, ReadReport()))
    truncated = tmp_path / "RS_truncated.zst"
    truncated.write_bytes(data[: len(data) - 30])
    with pytest.raises(DataError, match="truncated zstd"):
        list(reddit.iter_ndjson(truncated, ReadReport()))


def test_bad_ndjson_lines_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "RS_partial.ndjson"
    path.write_text(ASK.read_text() + '{"id": "cut", "title": "What\n\xff\n')
    report = ReadReport()
    rows = list(reddit.iter_ndjson(path, report))
    assert len(rows) == 9 and sum(report.skipped_bad.values()) == 2
    assert "RS_partial.ndjson:10" in report.first_bad[0]
    with pytest.raises(DataError, match=":10"):
        list(reddit.iter_ndjson(path, ReadReport(), strict=True))
