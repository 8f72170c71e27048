"""Export a study's labels as judgments rows (the format ``lima-align judge`` writes), and agreement of raters.

A human label becomes one row per (annotator, item) with the same ``protocol``, ``id``, ``sample``, ``models``,
``answers`` and ``verdict`` meaning as an LLM judge's row, so that the statistics and ``lima-align report`` apply
unchanged. The rater is ``row["judge"]`` (``{"kind": "human", "name": annotator}``); a pairwise row has ONE
call whose ``tag`` is the order shown to that annotator (``ab``: model a on the left), so position statistics
read the human's first-position preference like a judge's.

Agreement (:mod:`lima_align.evaluate.agreement`) groups any judgments rows, human exports and LLM judge files
alike, by rater and item and gives the paper's tie-discounted agreement of every pair of raters.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Mapping

from lima_align.annotate import db
from lima_align.annotate.study import study_config
from lima_align.conversation import Example
from lima_align.curate.review import Counts, decisions_path, write_accepted
from lima_align.evaluate.protocols import model_verdict
from lima_align.fileio import write_jsonl


def _base(kind: str, payload: dict[str, Any], annotator: str, study: str) -> dict[str, Any]:
    models = payload.get("models", {})
    item_key = "|".join([kind, *(str(models[k]) for k in ("a", "b") if k in models), str(payload["id"]),
                         str(payload.get("sample", 0))])
    base = {"key": f"human|{study}|{annotator}|{item_key}", "protocol": kind, "id": payload["id"],
            "sample": payload.get("sample", 0), "prompt": payload.get("prompt", ""), "models": models}
    if "answers" in payload:
        base["answers"] = payload["answers"]
        base["lengths"] = {k: len(v) for k, v in payload["answers"].items()}
    if "conversation" in payload:
        base["conversation"] = payload["conversation"]
    return base


def label_row(kind: str, rec: Mapping[str, Any], study: str, template: dict[str, str]) -> dict[str, Any]:
    """One judgments row from a stored label (``rec``: a row of :func:`db.all_labels`)."""
    payload = json.loads(rec["payload"])
    label = json.loads(rec["label"])
    row = _base(kind, payload, rec["annotator"], study)
    call: dict[str, Any] = {"label": label, "missing": False, "raw": None, "error": None,
                            "finished_at": rec["updated_at"], "revision": rec["revision"]}
    if kind == "pairwise":
        order = "ba" if rec["swap"] else "ab"
        verdict = model_verdict(order, label)
        row.update(verdict=verdict, consistent=None, missing=False)
        calls = [{"tag": order, **call, "verdict": verdict}]
    elif kind == "multiturn":
        row.update(verdict=label, missing=False)
        calls = [{"tag": f"turn-{i + 1}", **call, "label": x} for i, x in enumerate(label)]
    else:
        row.update(verdict=label, missing=False)
        calls = [{"tag": "s0", **call}]
    row.update(calls=calls, judge={"kind": "human", "name": rec["annotator"], "study": study},
               template=template, judged_at=rec["updated_at"], shared=bool(rec["shared"]))
    return row


def export_rows(conn: sqlite3.Connection, study_row: sqlite3.Row) -> list[dict[str, Any]]:
    """Judgments rows of every label of a study (pairwise / absolute / multiturn)."""
    template = study_config(study_row).template
    return [label_row(study_row["kind"], rec, study_row["name"], template)
            for rec in db.all_labels(conn, study_row["id"])]


def export_review(conn: sqlite3.Connection, study_row: sqlite3.Row, out: str | Path) -> dict[str, int]:
    """A review study's accepted examples, written exactly as ``lima-align review`` writes them (the latest
    decision per candidate wins when several annotators decided it), plus the decision log beside them."""
    items = [json.loads(r["payload"]) for r in
             conn.execute("SELECT payload FROM items WHERE study_id=? ORDER BY idx", (study_row["id"],))]
    candidates = [Example(**item["example"]) for item in items]
    labels = sorted(db.all_labels(conn, study_row["id"]), key=lambda r: r["updated_at"])
    decided: dict[str, dict[str, Any]] = {}
    for rec in labels:
        cid = json.loads(rec["payload"])["id"]
        decided[cid] = {"id": cid, **json.loads(rec["label"]), "annotator": rec["annotator"]}
    write_jsonl(decisions_path(out), list(decided.values()))
    counts = Counts()
    write_accepted(candidates, decided, out, counts)  # the terminal queue's own writer: identical output
    return {"accepted": counts.accepted, "edited": counts.edited, "rejected": counts.rejected,
            "pending": counts.pending}


# ------------------------------------------------------------------------------------------ agreement
def render_agreement(table: list[dict[str, Any]]) -> str:
    """The agreement table as aligned text (the CLI prints it)."""
    lines = [f"{'rater x':<28} {'rater y':<28} {'n':>4} {'agreement':>9} {'exact':>6}"]
    for r in table:
        agree = "-" if r["agreement"] != r["agreement"] else f"{100 * r['agreement']:.1f}%"
        exact = "-" if r["exact"] != r["exact"] else f"{100 * r['exact']:.1f}%"
        lines.append(f"{r['x']:<28} {r['y']:<28} {r['n']:>4} {agree:>9} {exact:>6}")
    return "\n".join(lines)
