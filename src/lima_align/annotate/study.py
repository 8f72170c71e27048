"""Studies: items built from outputs files, annotators with their queues, and label validation.

Kinds: ``pairwise`` (a prompt and two models' answers; which answer is shown on the left is drawn per
annotator and item and recorded), ``absolute`` (Fail / Pass / Excellent), ``multiturn`` (each assistant turn
rated) and ``review`` (accept / reject / edit a curated candidate: the web version of ``lima-align review``).

Overlap: ``overlap`` items, drawn with the study's seed, are given to EVERY annotator (the paper's 50 shared
items, for agreement); each annotator added also gets ``per_annotator`` of the other items nobody holds yet.
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lima_align.annotate import db
from lima_align.errors import LimaError

MAX_NAME = 200  # characters of an annotator's or a study's name

KINDS = ("pairwise", "absolute", "multiturn", "review")
RATINGS = ("fail", "pass", "excellent")
PAIRWISE = ("A", "B", "tie")  # as shown: left answer is "A"
DECISIONS = ("accept", "reject", "edit")
TEMPLATES = {"pairwise": "pairwise", "absolute": "absolute", "multiturn": "multiturn"}


@dataclass
class StudyConfig:
    """How a study hands out items."""

    overlap: int | None = None  # shared items given to every annotator; None: all items
    per_annotator: int = 0  # non-shared items per annotator added
    seed: int = 0
    sources: dict[str, str] = field(default_factory=dict)
    template: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- items
def pairwise_items(a: str | Path, b: str | Path, sample: int = 0) -> list[dict[str, Any]]:
    """One item per prompt both files answer (paired like ``lima-align judge pairwise``)."""
    from lima_align.evaluate.answers import pair_answers, read_answers

    pairing = pair_answers(read_answers(a, sample=sample), read_answers(b))
    return [{"id": x.id, "sample": x.sample, "prompt": x.question, "models": {"a": x.generator, "b": y.generator},
             "answers": {"a": x.text, "b": y.text}} for x, y in pairing.pairs]


def absolute_items(outputs: str | Path) -> list[dict[str, Any]]:
    from lima_align.evaluate.answers import read_answers

    return [{"id": x.id, "sample": x.sample, "prompt": x.question, "models": {"a": x.generator},
             "answers": {"a": x.text}} for x in read_answers(outputs)]


def multiturn_items(conversations: str | Path) -> list[dict[str, Any]]:
    from lima_align.formats.rows import read_examples

    items = [{"id": ex.id, "sample": 0, "prompt": ex.conversations[0], "conversation": list(ex.conversations),
              "models": {"a": str(ex.meta.get("generator") or Path(conversations).stem)}}
             for ex in read_examples(conversations) if not ex.is_prompt_only]
    if not items:
        raise LimaError(f"{conversations}: no conversation ends with an assistant turn")
    return items


def review_items(candidates: str | Path) -> list[dict[str, Any]]:
    from lima_align.conversation import OddTurns
    from lima_align.formats.rows import read_examples

    examples = read_examples(candidates, odd_turns=OddTurns.KEEP)
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        raise LimaError("candidate ids are not unique; decisions could not tell candidates apart")
    return [{"id": ex.id, "example": ex.to_dict()} for ex in examples]


# ------------------------------------------------------------------------------------------- studies
def create_study(conn: sqlite3.Connection, name: str, kind: str, items: list[dict[str, Any]],
                 config: StudyConfig) -> tuple[int, str | None]:
    """Store a study and its items (shared ones drawn with the seed); returns (study id, new admin token or
    None when the store already had one)."""
    if kind not in KINDS:
        raise LimaError(f"unknown study kind {kind!r} (one of {', '.join(KINDS)})")
    if not items:
        raise LimaError("a study needs at least one item")
    if db.study(conn, name) is not None:
        raise LimaError(f"study {name!r} already exists in this database")
    if kind in TEMPLATES and not config.template:
        from lima_align.evaluate.templates import load_template

        config.template = load_template(TEMPLATES[kind]).provenance()
    n = len(items)
    overlap = n if config.overlap is None else max(0, min(config.overlap, n))
    shared = set(random.Random(config.seed).sample(range(n), overlap))
    with db.transaction(conn):
        token = db.ensure_admin_token(conn)
        cur = conn.execute("INSERT INTO studies (name, kind, config, created_at) VALUES (?, ?, ?, ?)",
                           (name, kind, json.dumps(asdict(config)), db.now()))
        study_id = int(cur.lastrowid)
        conn.executemany("INSERT INTO items (study_id, idx, shared, payload) VALUES (?, ?, ?, ?)",
                         [(study_id, i, int(i in shared), json.dumps(item, ensure_ascii=False))
                          for i, item in enumerate(items)])
    return study_id, token


def study_config(row: sqlite3.Row) -> StudyConfig:
    return StudyConfig(**json.loads(row["config"]))


def require_study(conn: sqlite3.Connection, name: str | None) -> sqlite3.Row:
    row = db.study(conn, name)
    if row is None:
        known = ", ".join(r["name"] for r in db.studies(conn)) or "none"
        raise LimaError(f"no study {name!r} (studies: {known}); name one with --study" if name else
                        f"several or no studies in this database ({known}); name one with --study")
    return row


def add_annotator(conn: sqlite3.Connection, study_row: sqlite3.Row, name: str) -> str:
    """Create an annotator with their queue (shared items + their share of the rest, shuffled, pairwise sides
    drawn); returns their token (shown once)."""
    if not name.strip() or len(name) > MAX_NAME:
        raise LimaError(f"an annotator's name is 1 to {MAX_NAME} characters, got {len(name.strip())}")
    config = study_config(study_row)
    rng = random.Random(f"{config.seed}|{study_row['name']}|{name}")
    token = db.new_token()
    with db.transaction(conn):
        if conn.execute("SELECT 1 FROM annotators WHERE study_id=? AND name=?", (study_row["id"], name)).fetchone():
            raise LimaError(f"annotator {name!r} already exists in study {study_row['name']!r}")
        cur = conn.execute("INSERT INTO annotators (study_id, name, token_sha256, created_at) VALUES (?, ?, ?, ?)",
                           (study_row["id"], name, db.hash_token(token), db.now()))
        annotator_id = int(cur.lastrowid)
        shared = [r["id"] for r in conn.execute("SELECT id FROM items WHERE study_id=? AND shared=1 ORDER BY idx",
                                                (study_row["id"],))]
        free = [r["id"] for r in conn.execute(
            "SELECT id FROM items WHERE study_id=? AND shared=0 AND id NOT IN (SELECT item_id FROM assignments) "
            "ORDER BY idx LIMIT ?", (study_row["id"], config.per_annotator))]
        mine = shared + free
        rng.shuffle(mine)
        conn.executemany("INSERT INTO assignments VALUES (?, ?, ?, ?)",
                         [(annotator_id, item_id, pos, rng.randint(0, 1)) for pos, item_id in enumerate(mine)])
    return token


# ------------------------------------------------------------------------------------------- labels
def validate_label(kind: str, payload: dict[str, Any], label: Any) -> Any:
    """The label in its stored form, or LimaError saying what is wrong with it."""
    if kind == "pairwise" and label in PAIRWISE:
        return label
    if kind == "absolute" and label in RATINGS:
        return label
    if kind == "multiturn":
        turns = len(payload["conversation"]) // 2
        if isinstance(label, list) and len(label) == turns and all(x in RATINGS for x in label):
            return label
        raise LimaError(f"rate each of the {turns} assistant turns (fail / pass / excellent)")
    if kind == "review" and isinstance(label, dict) and label.get("decision") in DECISIONS:
        if label["decision"] != "edit":
            return {"decision": label["decision"]}
        turns = label.get("conversations")
        if isinstance(turns, list) and turns and all(isinstance(t, str) and t.strip() for t in turns):
            return {"decision": "edit", "conversations": turns}
        raise LimaError("an edit needs the edited turns")
    choices = {"pairwise": PAIRWISE, "absolute": RATINGS, "review": DECISIONS}.get(kind, ())
    raise LimaError(f"not a {kind} label: {label!r} (one of {', '.join(choices)})")
