"""Export: human labels become judgments rows that the statistics and ``lima-align report`` read, and the
agreement of two annotators and an LLM judge on the same items is the paper's tie-discounted agreement."""

from __future__ import annotations

import argparse
import json

import pytest
from fastapi.testclient import TestClient

from lima_align.annotate import db
from lima_align.annotate.app import create_app
from lima_align.annotate.export import export_rows
from lima_align.evaluate.agreement import agreement_from_rows
from lima_align.annotate.study import StudyConfig, add_annotator, create_study, review_items
from lima_align.evaluate.answers import pair_answers, read_answers
from lima_align.evaluate.protocols import pairwise_tasks
from lima_align.evaluate.templates import load_template
from lima_align.fileio import iter_jsonl, write_jsonl
from lima_align.report.build import build_report

# model-level verdicts per item (q0..q5) of each rater
ALICE = ["a", "a", "b", "tie", "a", "b"]
BOB = ["a", "tie", "b", "a", "b", "b"]
JUDGE = ["a", "a", "tie", "tie", "a", "a"]


def llm_rows(a, b, verdicts) -> list[dict]:
    """Rows exactly as ``lima-align judge pairwise`` writes them (its tasks and combine rule), with the judge
    calls' labels given instead of sent to a model."""
    pairs = pair_answers(read_answers(a, sample=0), read_answers(b)).pairs
    rows = []
    for task, verdict in zip(pairwise_tasks(pairs, load_template("pairwise")), verdicts):
        labels = {"a": ("A", "B"), "b": ("B", "A"), "tie": ("tie", "tie")}[verdict]
        calls = [{"tag": tag, "label": label, "raw": f"Verdict: {label}", "error": None}
                 for tag, label in zip(("ab", "ba"), labels)]
        rows.append({"key": task.key, **task.base, **task.combine(calls), "calls": calls,
                     "judge": {"name": "gpt-4", "kind": "openai", "model": "gpt-4"}})
    return rows


def label_as_shown(verdict: str, swap: int) -> str:
    if verdict == "tie":
        return "tie"
    left = "b" if swap else "a"
    return "A" if verdict == left else "B"


def label_all(conn, name: str, verdicts: list[str]) -> None:
    who = conn.execute("SELECT * FROM annotators WHERE name=?", (name,)).fetchone()
    for rec in db.queue(conn, who["id"]):
        v = verdicts[int(json.loads(rec["payload"])["id"][1:])]
        db.save_label(conn, who["id"], rec["item_id"], label_as_shown(v, rec["swap"]))


def expected(x, y) -> float:
    return sum(1.0 if p == q else 0.5 if "tie" in (p, q) else 0.0 for p, q in zip(x, y)) / len(x)


def test_export_two_annotators_and_judge_agreement_and_report(study_db, tmp_path):
    conn = db.connect(study_db["db"])
    label_all(conn, "alice", ALICE)
    label_all(conn, "bob", BOB)
    rows = export_rows(conn, db.study(conn, "pw"))
    assert len(rows) == 12 and len({r["key"] for r in rows}) == 12
    by = {(r["judge"]["name"], r["id"]): r for r in rows}
    assert [by[("alice", f"q{i}")]["verdict"] for i in range(6)] == ALICE  # sides mapped back to the models
    assert {r["calls"][0]["tag"] for r in rows} == {"ab", "ba"}  # both sides were shown
    judge = llm_rows(*study_db["outputs"], JUDGE)
    table = {(t["x"], t["y"]): t for t in agreement_from_rows(rows + judge)}
    assert table[("human:alice", "human:bob")]["agreement"] == pytest.approx(expected(ALICE, BOB))
    assert table[("human:alice", "judge:gpt-4")]["agreement"] == pytest.approx(expected(ALICE, JUDGE))
    assert table[("human:bob", "judge:gpt-4")]["n"] == 6

    human_file, judge_file = tmp_path / "human.jsonl", tmp_path / "judge.jsonl"
    write_jsonl(human_file, rows)
    write_jsonl(judge_file, judge)
    build_report([human_file, judge_file], tmp_path / "report")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    # the LLM judge's verdicts are counted apart from the people's (both annotators pooled, as in the paper)
    assert {(g["protocol"], g["judge"], g["rows"]) for g in summary} == {("pairwise", "gpt-4", 6),
                                                                      ("pairwise", "human", 12)}


def test_report_shows_agreement_table(study_db, tmp_path):
    conn = db.connect(study_db["db"])
    label_all(conn, "alice", ALICE)
    label_all(conn, "bob", BOB)
    write_jsonl(tmp_path / "human.jsonl", export_rows(conn, db.study(conn, "pw")))
    write_jsonl(tmp_path / "judge.jsonl", llm_rows(*study_db["outputs"], JUDGE))
    build_report([tmp_path / "human.jsonl", tmp_path / "judge.jsonl"], tmp_path / "report")
    assert "human:alice" in (tmp_path / "report" / "index.html").read_text()


def cli(argv: list[str]) -> int:
    from lima_align.cli import annotate

    parser = argparse.ArgumentParser()
    annotate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_create_add_export(tmp_path, outputs, capsys):
    a, b = outputs
    dbp = str(tmp_path / "s.sqlite")
    assert cli(["annotate", "create-study", "--db", dbp, "--name", "pw", "--kind", "pairwise", "--a", str(a),
                "--b", str(b), "--overlap", "4", "--per-annotator", "1"]) == 0
    assert "admin token" in capsys.readouterr().err
    cli(["annotate", "add-annotator", "--db", dbp, "--name", "alice"])
    token = capsys.readouterr().out.strip()
    conn = db.connect(dbp)
    assert db.annotator_by_token(conn, token)["name"] == "alice"
    assert db.progress(conn, 1) == (0, 5)
    label_all(conn, "alice", ALICE)
    judge = tmp_path / "judge.jsonl"
    write_jsonl(judge, llm_rows(a, b, JUDGE))
    assert cli(["annotate", "export", "--db", dbp, "--out", str(tmp_path / "h.jsonl"), "--agreement",
                str(judge)]) == 0
    out = capsys.readouterr().out
    assert "human:alice" in out and "judge:gpt-4" in out
    assert len(list(iter_jsonl(tmp_path / "h.jsonl"))) == 5


def test_review_study_writes_what_the_terminal_queue_writes(tmp_path):
    from lima_align.curate.review import review

    cands = tmp_path / "cands.jsonl"
    write_jsonl(cands, [{"id": f"c{i}", "conversations": [f"prompt {i}", f"answer {i}"], "source": "test",
                         "meta": {"origin": "unit"}} for i in range(3)])
    conn = db.connect(tmp_path / "s.sqlite")
    create_study(conn, "rv", "review", review_items(cands), StudyConfig())
    token = add_annotator(conn, db.study(conn, "rv"), "ann")
    client = TestClient(create_app(tmp_path / "s.sqlite"), headers={"Authorization": f"Bearer {token}"})
    ids = {json.loads(r["payload"])["id"]: r["item_id"] for r in db.queue(conn, 1)}
    client.post(f"/items/{ids['c0']}", data={"decision": "accept"})
    client.post(f"/items/{ids['c1']}", data={"decision": "reject"})
    edited = "## User\nprompt 2, edited\n\n## Assistant\na better answer\n"
    assert client.post(f"/items/{ids['c2']}", data={"decision": "edit", "edited": edited}).status_code == 200
    cli(["annotate", "export", "--db", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "web.jsonl")])

    from lima_align.formats.rows import read_examples
    answers = iter(["a", "r", "e"])
    review(read_examples(cands), tmp_path / "term.jsonl", ask=lambda _: next(answers), show=lambda _: None,
           edit=lambda _: edited)
    assert (tmp_path / "web.jsonl").read_text() == (tmp_path / "term.jsonl").read_text()


def test_registered_in_the_main_command(tmp_path, outputs):
    from lima_align.cli import main

    a, b = outputs
    dbp = str(tmp_path / "s.sqlite")
    assert main(["annotate", "create-study", "--db", dbp, "--name", "abs", "--kind", "absolute",
                 "--outputs", str(a)]) == 0
    assert main(["annotate", "close", "--db", dbp]) == 0
    assert db.study(db.connect(dbp), "abs")["closed"] == 1
    assert main(["annotate", "add-annotator", "--db", str(tmp_path / "none.sqlite"), "--name", "x"]) == 2
