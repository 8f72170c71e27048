"""Judge calibration: agreement with human-labelled pairs before a judge is trusted.

Sources: BIG-bench ``hhh_alignment`` (``task.json`` files whose ``target_scores`` mark the human-preferred
response with 1; every (preferred, other) pair is one item), or any JSONL of ``{"id", "prompt", "a", "b",
"human": "a"|"b"|"tie"}`` (e.g. MT-bench human judgments converted). Items are judged in both orders like any
pair, with model a = the human's choice (for hhh), so the human label is always 'a' there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lima_align.errors import DataError
from lima_align.evaluate.answers import Answer
from lima_align.evaluate.statistics import length_bias, position_consistency, tie_discounted_agreement
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


def calibration_summary(rows: list[dict[str, Any]], human: dict[str, str]) -> dict[str, Any]:
    """Accuracy (exact and tie-discounted) against the human labels, position consistency, length bias."""
    judge = {r["id"]: r["verdict"] for r in rows}
    agreement = tie_discounted_agreement(human, judge)
    decided = [r for r in rows if r["verdict"] is not None]
    return {"items": len(rows), "judged": len(decided), "missing": len(rows) - len(decided),
            "accuracy": agreement["exact"], "tie_discounted_accuracy": agreement["agreement"],
            "ties": sum(r["verdict"] == "tie" for r in decided),
            "position": position_consistency(rows), "length": length_bias(rows)}
