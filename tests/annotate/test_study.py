"""The store and study rules: overlap, recorded sides, queues, labels that change until the study closes."""

from __future__ import annotations

import json

import pytest

from lima_align.annotate import db
from lima_align.annotate.study import (StudyConfig, add_annotator, create_study, multiturn_items, pairwise_items,
                                       review_items, validate_label)
from lima_align.errors import LimaError


def test_wal_mode_and_admin_token_once(tmp_path, outputs):
    conn = db.connect(tmp_path / "s.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    _, admin = create_study(conn, "one", "pairwise", pairwise_items(*outputs), StudyConfig())
    _, again = create_study(conn, "two", "absolute", pairwise_items(*outputs), StudyConfig())
    assert admin and again is None and db.is_admin(conn, admin) and not db.is_admin(conn, "nope")
    assert admin not in json.dumps([dict(r) for r in conn.execute("SELECT * FROM meta")])  # only its hash
    with pytest.raises(LimaError, match="already exists"):
        create_study(conn, "one", "pairwise", pairwise_items(*outputs), StudyConfig())


def test_overlap_shared_items_and_private_share(tmp_path, outputs):
    conn = db.connect(tmp_path / "s.sqlite")
    create_study(conn, "pw", "pairwise", pairwise_items(*outputs), StudyConfig(overlap=2, per_annotator=2, seed=3))
    st = db.study(conn, "pw")
    for name in ("a", "b", "c", "d"):
        add_annotator(conn, st, name)
    queues = {a["name"]: {r["item_id"] for r in db.queue(conn, a["id"])} for a in db.annotators(conn, st["id"])}
    shared = {r["id"] for r in conn.execute("SELECT id FROM items WHERE shared=1")}
    assert len(shared) == 2 and all(shared <= q for q in queues.values())
    private = [q - shared for q in queues.values()]
    assert [len(p) for p in private] == [2, 2, 0, 0]  # 4 non-shared items: the first two annotators hold them
    assert not private[0] & private[1]


def test_pairwise_sides_are_random_and_recorded(tmp_path, outputs):
    a, b = outputs
    items = pairwise_items(a, b)
    assert items[0]["models"] == {"a": "lima-65b", "b": "davinci003"}
    conn = db.connect(tmp_path / "s.sqlite")
    create_study(conn, "pw", "pairwise", items * 1, StudyConfig(seed=0))
    st = db.study(conn, "pw")
    swaps = []
    for i in range(8):
        add_annotator(conn, st, f"n{i}")
    swaps = [r["swap"] for r in conn.execute("SELECT swap FROM assignments")]
    assert set(swaps) == {0, 1}  # 48 draws: both sides occur


def test_label_changes_until_closed_without_duplicates(study_db):
    conn = db.connect(study_db["db"])
    who = db.annotator_by_token(conn, study_db["tokens"]["alice"])
    item = db.queue(conn, who["id"])[0]["item_id"]
    assert db.save_label(conn, who["id"], item, "A") == 1
    assert db.save_label(conn, who["id"], item, "tie") == 2
    rows = conn.execute("SELECT label FROM labels").fetchall()
    assert [json.loads(r["label"]) for r in rows] == ["tie"]
    assert db.progress(conn, who["id"]) == (1, 6)


def test_validate_labels():
    assert validate_label("pairwise", {}, "B") == "B"
    assert validate_label("absolute", {}, "excellent") == "excellent"
    conv = {"conversation": ["u1", "a1", "u2", "a2"]}
    assert validate_label("multiturn", conv, ["pass", "fail"]) == ["pass", "fail"]
    assert validate_label("review", {}, {"decision": "accept", "x": 1}) == {"decision": "accept"}
    for kind, payload, bad in (("pairwise", {}, "C"), ("absolute", {}, "good"), ("multiturn", conv, ["pass"]),
                               ("review", {}, {"decision": "edit", "conversations": []})):
        with pytest.raises(LimaError):
            validate_label(kind, payload, bad)


def test_multiturn_and_review_items(tmp_path):
    convs = tmp_path / "c.jsonl"
    convs.write_text(json.dumps({"id": "c1", "conversations": ["hi", "hello", "more?", "sure"]}) + "\n"
                     + json.dumps({"id": "c2", "conversations": ["only a prompt"]}) + "\n")
    items = multiturn_items(convs)
    assert [i["id"] for i in items] == ["c1"] and len(items[0]["conversation"]) == 4
    assert [i["id"] for i in review_items(convs)] == ["c1", "c2"]


def test_an_annotators_name_is_bounded(tmp_path, outputs):
    from lima_align.annotate.study import MAX_NAME

    conn = db.connect(tmp_path / "s.sqlite")
    create_study(conn, "pw", "pairwise", pairwise_items(*outputs), StudyConfig(seed=1))
    for bad in ("", "   ", "x" * (MAX_NAME + 1)):
        with pytest.raises(LimaError, match="1 to 200 characters"):
            add_annotator(conn, db.study(conn, "pw"), bad)
    assert add_annotator(conn, db.study(conn, "pw"), "x" * MAX_NAME)
