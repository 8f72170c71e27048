"""Judge calibration: agreement with human-labelled pairs before a judge is trusted.

Sources: BIG-bench ``hhh_alignment`` (``task.json`` files whose ``target_scores`` mark the human-preferred
response with 1; every (preferred, other) pair is one item), or any JSONL of ``{"id", "prompt", "a", "b",
"human": "a"|"b"|"tie"}`` (e.g. MT-bench human judgments converted). Items are judged in both orders like any
pair, with model a = the human's choice (for hhh), so the human label is always 'a' there.

:func:`calibration_summary` reports what decides whether a judge can be trusted: accuracy against the humans
with a 95% Wilson interval (items as independent units: one pair per prompt in hhh's two-answer examples),
position consistency and the first-position rate of its verdicts, and length bias. For a weighted judge it adds
what the averaging hides: how often the model alone, in one order, puts the first-shown answer on top
(``raw_first_position_rate``, and the mean probability share it gives it), how often its two single-order
verdicts agree, and the soft accuracy (the mean probability given to the human's choice, ties counting half).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lima_align.errors import DataError
from lima_align.evaluate.answers import Answer
from lima_align.evaluate.intervals import wilson_interval
from lima_align.evaluate.statistics import length_bias, position_consistency, tie_discounted_score
from lima_align.fileio import iter_jsonl


def load_hhh(root: str | Path) -> list[tuple[Answer, Answer, str]]:
    """(preferred, other, human label) items of every ``task.json`` under ``root`` (subtasks by folder)."""
    files = sorted(Path(root).rglob("task.json"))
    items = []
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        for i, ex in enumerate(data.get("examples", ())):
            scores = ex.get("target_scores") or {}
            best = [r for r, s in scores.items() if s == 1]
            if len(best) != 1:
                continue
            subtask = path.parent.name
            for j, other in enumerate(r for r, s in scores.items() if s != 1):
                item_id = f"hhh-{subtask}-{i:03d}-{j}"
                turns = (ex["input"],)
                items.append((Answer(item_id, 0, turns, best[0], "human-preferred"),
                              Answer(item_id, 0, turns, other, "human-rejected"), "a"))
    if not items:
        raise DataError("no hhh_alignment items (expected task.json files with examples)", root)
    return items


def load_labelled_pairs(path: str | Path) -> list[tuple[Answer, Answer, str]]:
    """Human-labelled pairs from JSONL rows ``{"id", "prompt", "a", "b", "human"}``."""
    items = []
    for line, row in iter_jsonl(path):
        human = row.get("human")
        if human not in ("a", "b", "tie"):
            raise DataError("'human' must be 'a', 'b' or 'tie'", path, line, "human")
        item_id = str(row.get("id", line))
        turns = (row["prompt"],)
        items.append((Answer(item_id, 0, turns, row["a"], row.get("model_a", "a")),
                      Answer(item_id, 0, turns, row["b"], row.get("model_b", "b")), human))
    if not items:
        raise DataError("no labelled pairs", path)
    return items


def wilson_ci(successes: int, n: int, level: float = 0.95) -> list[float]:
    """The Wilson score interval of ``successes / n`` (:func:`~lima_align.evaluate.intervals.wilson_interval`);
    [nan, nan] for n = 0."""
    if n == 0:
        return [math.nan, math.nan]
    lo, hi = wilson_interval(successes, n, level=level)
    return [float(lo), float(hi)]


def calibration_summary(rows: list[dict[str, Any]], human: dict[str, str]) -> dict[str, Any]:
    """Accuracy (exact, with a 95% Wilson CI, and tie-discounted) against the human labels, position
    consistency, first-position rate, length bias; a weighted judge's single-order diagnostics."""
    decided = [r for r in rows if r["verdict"] is not None]
    correct = sum(r["verdict"] == human[r["id"]] for r in decided)
    scores = [tie_discounted_score(r["verdict"], human[r["id"]]) for r in decided]
    position, length = position_consistency(rows), length_bias(rows)
    summary = {"items": len(rows), "judged": len(decided), "missing": len(rows) - len(decided),
               "accuracy": correct / len(decided) if decided else math.nan,
               "accuracy_ci95": wilson_ci(correct, len(decided)),
               "tie_discounted_accuracy": sum(scores) / len(scores) if scores else math.nan,
               "ties": sum(r["verdict"] == "tie" for r in decided),
               "position_consistency": position["consistency"],
               "first_position_rate": position["first_position_win_rate"],
               "longer_wins_rate": length["longer_wins_rate_combined"],
               "position": position, "length": length}
    weighted = [r for r in rows if r.get("mode") == "weighted"]
    if weighted:
        summary["weighted"] = weighted_diagnostics(weighted, human)
    return summary


def weighted_diagnostics(rows: list[dict[str, Any]], human: dict[str, str]) -> dict[str, Any]:
    """What the model does in ONE order (the position bias that averaging the orders removes), and the soft
    accuracy: the mean combined probability of the human's choice winning, a tie counting half."""
    first_shares, first_wins, decided, soft = [], 0, 0, []
    agree = [r["per_order_consistent"] for r in rows if r.get("per_order_consistent") is not None]
    for row in rows:
        for call in row.get("calls", ()):
            probs, raw = call.get("probs"), call.get("raw_label")
            if probs and probs["A"] + probs["B"] > 0:
                first_shares.append(probs["A"] / (probs["A"] + probs["B"]))
            if raw in ("A", "B"):
                decided += 1
                first_wins += raw == "A"
        pref, label = row.get("soft_preference"), human.get(row["id"])
        if pref is not None and label in ("a", "b"):
            soft.append(pref if label == "a" else 1 - pref)
    return {"rows": len(rows), "soft_accuracy": _mean(soft),
            "raw_first_position_rate": first_wins / decided if decided else math.nan,
            "raw_first_position_share": _mean(first_shares),
            "per_order_consistency": _mean([float(a) for a in agree])}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
