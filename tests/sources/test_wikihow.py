"""wikiHow source: the real step-text scrape and index, CSV/JSON readers, pruning and category-first sampling."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lima_align.cli import main
from lima_align.errors import DataError
from lima_align.sources import wikihow

TOP_LEVEL = set(wikihow.load_category_table().values())


@pytest.fixture(scope="module")
def real(shared_data: Path) -> Path:
    return shared_data / "wikihow"


def test_real_scrape_every_row_follows_the_rules(real: Path, tmp_path: Path) -> None:
    out, rep = tmp_path / "wh.jsonl", tmp_path / "wh.report.json"
    assert main(["curate", "wikihow", str(real / "message_drift_wikihow_steps_conditions.jsonl"),
                 "--index", str(real / "wikihowagent_wikihow_tutorials_index.csv"),
                 "--out", str(out), "--report", str(rep)]) == 0
    report = json.loads(rep.read_text())
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert report["considered"] == 94  # 150 section records of 94 distinct articles
    assert report["kept"] + sum(report["rejected"].values()) == report["considered"]
    assert len(rows) == report["kept"] > 50
    assert sum(v for k, v in report["kept_by_category"].items() if k != wikihow.UNCATEGORIZED) >= 5
    for row in rows:
        prompt, response = row["conversations"]
        assert re.fullmatch(r"How to [^?]+\?", prompt)
        assert response.startswith("1. ") or response.startswith("Part 1")
        assert len(response) >= wikihow.DEFAULT_MIN_CHARS
        assert not re.search(r"https?://|\[\d+\]| n't\b| ’ |<newline>", response)
        assert row["meta"]["license"] == "CC BY-NC-SA 3.0" and row["meta"]["url"].startswith("https://www.wikihow")
        assert row["meta"]["curation"]["category"] in TOP_LEVEL | {wikihow.UNCATEGORIZED}


def test_index_csv_is_not_an_article_file(real: Path) -> None:
    with pytest.raises(DataError, match="'title' and 'text'"):
        wikihow.curate([real / "wikihowagent_wikihow_tutorials_index.csv"], wikihow.WikiHowConfig(),
                       wikihow.load_category_table())


def test_every_index_category_maps_to_the_19(real: Path) -> None:
    table = wikihow.load_category_table()
    index = wikihow.load_index(real / "wikihowagent_wikihow_tutorials_index.csv")
    assert len(TOP_LEVEL) == 19
    assert all(wikihow.normalize(c) in table for c in set(index.values()))


def test_json_scrape_pruning(tmp_path: Path) -> None:
    recs = [{"title": "How to Boil an Egg", "category": "Egg Basics", "intro":
             "This article will show you how to boil an egg.[1]", "section": "Boiling", "section_id": 0,
             "steps": ["Fill a pot with water. Visit https://example.com for more.", "Add the egg.[2]"]},
            {"title": "How to Boil an Egg", "section": "Tips", "section_id": 2, "steps": ["Use fresh eggs."]},
            {"title": "How to Boil an Egg", "section": "Cooling", "section_id": 1,
             "text": "<ol><li>Move the egg to <a href='https://x.org'>cold water</a>.<img src='e.jpg'/></li>"
                     "<li>Peel it.</li></ol><p>Advertisement</p>"}]
    path = tmp_path / "scrape.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n{truncated\n")
    examples, report = wikihow.curate([path], wikihow.WikiHowConfig(min_chars=10), wikihow.load_category_table())
    (ex,) = examples
    assert ex.prompt == "How to Boil an Egg?"
    assert ex.response == ("The following answer will show you how to boil an egg.\n\nPart 1: Boiling\n"
                           "1. Fill a pot with water. Visit for more.\n2. Add the egg.\n\nPart 2: Cooling\n"
                           "1. Move the egg to cold water.\n2. Peel it.")
    assert ex.meta["curation"]["category"] == "Food and Entertaining"
    assert sum(report.skipped_bad.values()) == 1 and "scrape.jsonl:4" in report.first_bad[0]


def test_csv_reader_and_broken_quoting(tmp_path: Path) -> None:
    good = tmp_path / "wikihowAll.csv"
    good.write_text('headline,title,text\n"\nHeat the pan.,\nAdd eggs.","How to Cook an Omelette1",'
                    '"\n,It should be hot.\n,Beat them first."\n')
    (ex,), _ = wikihow.curate([good], wikihow.WikiHowConfig(min_chars=10), wikihow.load_category_table())
    assert ex.prompt == "How to Cook an Omelette?"
    assert ex.response == "1. Heat the pan. It should be hot.\n2. Add eggs. Beat them first."
    bad = tmp_path / "broken.csv"
    bad.write_text('title,headline,text\nA,b,c\n"Unclosed,x,y\nB,c,d\n')
    with pytest.raises(DataError, match=r"broken.csv:\d"):
        wikihow.curate([bad], wikihow.WikiHowConfig(min_chars=1), wikihow.load_category_table())


def test_category_first_sampling_is_uniform_over_categories(tmp_path: Path) -> None:
    recs = [{"title": f"Do Thing {i}", "category": "Dogs", "steps": ["x" * 20]} for i in range(50)]
    recs += [{"title": f"Fly {i}", "category": "Air Travel", "steps": ["y" * 20]} for i in range(3)]
    path = tmp_path / "many.json"
    path.write_text(json.dumps(recs))
    travel = 0
    for seed in range(10):  # categories are drawn uniformly: about half of 4 draws, not 3/53 of them
        examples, report = wikihow.curate([path], wikihow.WikiHowConfig(n=4, seed=seed, min_chars=10),
                                          wikihow.load_category_table())
        travel += [e.meta["curation"]["category"] for e in examples].count("Travel")
        assert report.dropped["not_sampled"] == 49 and report.kept == 4
    assert 12 <= travel <= 28
    cfg = wikihow.WikiHowConfig(n=6, seed=1, min_chars=10)
    examples, _ = wikihow.curate([path], cfg, wikihow.load_category_table())
    again, _ = wikihow.curate([path], cfg, wikihow.load_category_table())
    assert [e.id for e in again] == [e.id for e in examples]
