"""Summaries of judgments files: rows grouped by (protocol, models, rater), each group's statistics. Pure.

The rater is the LLM judge's name, or "human" for the annotation app's rows (all annotators pooled, as in the
paper's human study): the verdicts of different judges on the same models are never mixed in one count. Every
interval has the row's prompt ``id`` as its unit (all samples of a prompt together), and every pairwise group
gives its rates under each tie convention (:mod:`lima_align.evaluate.tie_conventions`), ``outcomes`` being the
default ``disagreement=tie``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

from lima_align.evaluate.length_control import length_controlled_win_rate
from lima_align.evaluate.statistics import label_rates, length_bias, likert_summary, position_consistency
from lima_align.evaluate.tie_conventions import DEFAULT_POLICY, pairwise_conventions, prompt_id

RATINGS = ("fail", "pass", "excellent")
SAFETY = ("safe", "unsafe")


def rater(row: Mapping[str, Any]) -> str:
    judge = row.get("judge") or {}
    return "human" if judge.get("kind") == "human" else str(judge.get("name") or "")


def group_key(row: Mapping[str, Any]) -> tuple[str, str, str, str]:
    models = row.get("models", {})
    return (row["protocol"], str(models.get("a", "")), str(models.get("b", "")), rater(row))


def group_label(group: Mapping[str, Any]) -> str:
    """``a vs b (judge)`` for pairwise groups, ``a (judge)`` for single-answer ones."""
    label = f"{group['a']} vs {group['b']}" if group["b"] else group["a"]
    return f"{label} ({group['judge']})" if group.get("judge") else label


def _likert_score(verdict: Any) -> float | None:
    if isinstance(verdict, list):  # several judge samples: their mean
        parsed = [v for v in verdict if v is not None]
        return sum(parsed) / len(parsed) if parsed else None
    return verdict


def summarize_group(protocol: str, rows: list[Mapping[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """One group's statistics: pairwise ``outcomes`` (the default convention), ``conventions`` (all of them), the
    ``length_controlled`` win rate, judge ``position`` and ``length`` behaviour; ``likert``; or ``labels``
    (absolute, safety, multiturn)."""
    verdicts = [r.get("verdict") for r in rows]
    prompts = [prompt_id(r, i) for i, r in enumerate(rows)]
    if protocol == "pairwise":
        conventions = pairwise_conventions(rows, seed=seed)
        return {"outcomes": conventions[DEFAULT_POLICY], "conventions": conventions,
                "length_controlled": length_controlled_win_rate(rows, seed=seed),
                "position": position_consistency(rows), "length": length_bias(rows)}
    if protocol == "likert":
        return {"likert": likert_summary([_likert_score(v) for v in verdicts], prompts)}
    if protocol == "absolute":
        return {"labels": label_rates(verdicts, RATINGS, prompts, seed=seed)}
    if protocol == "safety":
        return {"labels": label_rates(verdicts, SAFETY, prompts, seed=seed)}
    if protocol == "multiturn":  # the turns of one conversation are resampled together
        turns = [(label, p) for v, p in zip(verdicts, prompts) for label in (v or [])]
        return {"labels": label_rates([t for t, _ in turns], RATINGS, [p for _, p in turns], seed=seed),
                "conversations": len(rows)}
    raise ValueError(f"unknown protocol {protocol!r}")


def summarize(rows: Iterable[Mapping[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """One entry per (protocol, model a, model b, rater) with its statistics, in a stable order."""
    groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[group_key(row)].append(row)
    return [{"protocol": p, "a": a, "b": b, "judge": j, "rows": len(g), **summarize_group(p, g, seed=seed)}
            for (p, a, b, j), g in sorted(groups.items())]
