"""Agreement between raters over judgments rows: human annotation exports and LLM judge files alike.

A rater is a human annotator (``judge.kind == "human"``) or a judge model; an item is (protocol, models, prompt id,
sample). Pure functions over rows, so the annotation app, its export and ``lima-align report`` share them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

from lima_align.evaluate.statistics import agreement_table


def rater_name(row: Mapping[str, Any]) -> str:
    judge = row.get("judge") or {}
    if judge.get("kind") == "human":
        return f"human:{judge.get('name')}"
    return f"judge:{judge.get('model') or judge.get('name') or 'unknown'}"


def item_key(row: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    models = row.get("models", {})
    return (row["protocol"], str(models.get("a", "")), str(models.get("b", "")), str(row["id"]),
            str(row.get("sample", 0)))


def prompt_of(item: tuple[str, str, str, str, str]) -> str:
    """The prompt id of an :func:`item_key`: the unit the agreement CI resamples."""
    return item[3]


def agreement_from_rows(rows: Iterable[Mapping[str, Any]], protocol: str = "pairwise") -> list[dict[str, Any]]:
    """Tie-discounted agreement of every pair of raters over the items both labelled (pairwise verdicts
    a / b / tie; for absolute labels it is exact agreement, there being no tie), each with its CI over prompts."""
    raters: dict[str, dict[tuple, Any]] = defaultdict(dict)
    for row in rows:
        if row.get("protocol") == protocol and not isinstance(row.get("verdict"), list):
            raters[rater_name(row)][item_key(row)] = row.get("verdict")
    return agreement_table(raters, cluster_of=prompt_of)
