"""Statistics of judgments: pure functions from verdicts / rows to numbers (no I/O, no mutation).

Pairwise verdicts are from model a's side: 'a' = a wins, 'b' = a loses, 'tie'; ``None`` = missing, counted and
excluded from the rates. Every function takes the prompt id of each verdict (``prompts``): the samples of one
prompt are resampled together and the prompt is the unit of every interval (:mod:`lima_align.evaluate.intervals`;
without ids each verdict is its own prompt). Intervals are two-sided, 95% by default, and name their method:
rates ``cluster-bootstrap`` or ``wilson`` (never zero width), Likert means ``t-over-prompts``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np

from lima_align.evaluate.intervals import design, mean_difference, prompt_totals, rate_cis, t_interval

OUTCOMES = ("win", "tie", "loss")
_OUTCOME_OF = {"a": "win", "tie": "tie", "b": "loss"}
WIN_RATE = "win_plus_half_tie"  # the alpaca_eval-style win rate: a tie counts half a win


def rates(columns: Mapping[str, Sequence[float]], prompts: Sequence[Hashable] | None = None, *,
          level: float = 0.95, n_boot: int = 2000, seed: int = 0, unit: str = "sample") -> dict[str, Any]:
    """Each column's mean (per-row values in [0, 1]) with ``<name>_ci`` and ``<name>_ci_method``, plus the
    design (``n_prompts``, ``n_samples``, ``design``: rows being ``unit``s) and ``level``. All columns share the
    bootstrap draws."""
    names = list(columns)
    n = len(next(iter(columns.values()), ()))
    out: dict[str, Any] = {}
    if n == 0:
        for k in names:
            out.update({k: math.nan, f"{k}_ci": [math.nan, math.nan], f"{k}_ci_method": "none"})
        return {**out, **design(np.zeros(0), unit), "level": level}
    matrix = np.column_stack([np.asarray(columns[k], dtype=float) for k in names])
    sums, sizes, _ = prompt_totals(matrix, prompts)
    r = rate_cis(sums, sizes, level=level, n_boot=n_boot, seed=seed)
    for i, k in enumerate(names):
        out.update({k: float(r["rate"][i]), f"{k}_ci": [float(r["lo"][i]), float(r["hi"][i])],
                    f"{k}_ci_method": "cluster-bootstrap" if r["bootstrap"][i] else "wilson"})
    return {**out, **design(sizes, unit), "level": level}


def _count(total: float) -> float | int:
    return int(total) if float(total).is_integer() else float(total)


def outcome_rates(weights: Sequence[Sequence[float]], prompts: Sequence[Hashable] | None = None, *,
                  level: float = 0.95, n_boot: int = 2000, seed: int = 0, unit: str = "sample") -> dict[str, Any]:
    """Win / tie / loss rates from per-row (win, tie, loss) weights (one-hot, or fractions summing to 1), with
    the alpaca_eval-style ``win_plus_half_tie``; ``counts`` are the summed weights (halves under ``average``)."""
    w = np.asarray(weights, dtype=float).reshape(-1, len(OUTCOMES))
    columns = {k: w[:, i] for i, k in enumerate(OUTCOMES)}
    columns[WIN_RATE] = w[:, 0] + w[:, 1] / 2
    return {"n": len(w), "counts": {k: _count(w[:, i].sum()) for i, k in enumerate(OUTCOMES)},
            **rates(columns, prompts, level=level, n_boot=n_boot, seed=seed, unit=unit)}


def _judged(items: Sequence[Any], prompts: Sequence[Hashable] | None) -> tuple[list[Any], list[Hashable]]:
    """The non-missing items and their prompt ids (each item its own prompt without ids)."""
    ids = list(range(len(items))) if prompts is None else list(prompts)
    if len(ids) != len(items):
        raise ValueError(f"{len(items)} verdicts but {len(ids)} prompt ids")
    kept = [(v, p) for v, p in zip(items, ids) if v is not None]
    return [v for v, _ in kept], [p for _, p in kept]


def win_tie_loss(verdicts: Iterable[str | None], prompts: Sequence[Hashable] | None = None, *,
                 n_boot: int = 2000, seed: int = 0, level: float = 0.95, unit: str = "sample") -> dict[str, Any]:
    """Win / tie / loss rates of model a with prompt-clustered CIs; missing verdicts are counted, not rated."""
    verdicts = list(verdicts)
    judged, ids = _judged(verdicts, prompts)
    weights = [[float(_OUTCOME_OF[v] == k) for k in OUTCOMES] for v in judged]
    return {**outcome_rates(weights, ids, level=level, n_boot=n_boot, seed=seed, unit=unit),
            "missing": len(verdicts) - len(judged)}


def label_rates(labels: Iterable[str | None], order: Sequence[str], prompts: Sequence[Hashable] | None = None, *,
                n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Distribution of categorical labels (Fail/Pass/Excellent, safe/unsafe) with prompt-clustered CIs."""
    labels = list(labels)
    judged, ids = _judged(labels, prompts)
    columns = {k: [float(x == k) for x in judged] for k in order}
    return {"n": len(judged), "missing": len(labels) - len(judged),
            "counts": {k: judged.count(k) for k in order},
            **rates(columns, ids, level=level, n_boot=n_boot, seed=seed)}


# ------------------------------------------------------------------------------------------------ Likert
def likert_summary(scores: Iterable[float | None], prompts: Sequence[Hashable] | None = None, *,
                   level: float = 0.95) -> dict[str, Any]:
    """Mean score with a two-sided t CI over PROMPTS: each prompt's samples are averaged, then
    mean +- t_{(1+level)/2, k-1} * sd / sqrt(k) over the k prompt means (``sd``: theirs).

    The mean is the mean of prompt means (every prompt weighs the same; with as many graded samples per prompt
    it is the mean of all scores). ``n`` = ``n_samples`` = scores graded; ``prompt_means`` feeds
    :func:`compare_likert`."""
    scores = list(scores)
    x, ids = _judged(scores, prompts)
    sums, sizes, order = prompt_totals(np.asarray(x, dtype=float), ids) if x else (np.zeros(0), np.zeros(0), [])
    means = {str(p): float(v) for p, v in zip(order, sums / np.maximum(sizes, 1))}
    out: dict[str, Any] = {"n": len(x), "missing": len(scores) - len(x), "mean": math.nan, "sd": math.nan,
                           "ci": [math.nan, math.nan], "level": level, "ci_method": "t-over-prompts",
                           **design(sizes), "prompt_means": means}
    if not means:
        return out
    m = np.fromiter(means.values(), float, len(means))
    out["mean"] = float(m.mean())
    if len(m) > 1:
        lo, hi = t_interval(m, level=level)
        out.update(sd=float(m.std(ddof=1)), ci=[float(lo), float(hi)])
    return out


def compare_likert(a: Mapping[str, Any], b: Mapping[str, Any], *, level: float = 0.95) -> dict[str, Any]:
    """Mean of arm a minus arm b (two :func:`likert_summary` results) with its CI: paired t over per-prompt
    differences when both graded the same prompts, Welch's t otherwise (:func:`intervals.mean_difference`)."""
    diff = mean_difference(a.get("prompt_means") or {}, b.get("prompt_means") or {}, level=level)
    return {**diff, "n_samples": {"a": a.get("n_samples", a.get("n")), "b": b.get("n_samples", b.get("n"))}}


# ------------------------------------------------------------------------------------ judge behaviour
def position_consistency(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Of the pairs judged in both orders with both parsed: how often the two orders agree (and flip), and how
    often a non-tie call picks the answer shown FIRST (0.5 = no position preference). For weighted rows the
    verdicts are the averaged ones (no position preference by construction); ``single_calls`` then describes the
    calls they average, by their own argmaxes (``raw_label``), which may well prefer a position."""
    result = _positions(rows, "label", "consistent")
    if any("per_order_consistent" in row for row in rows):
        result["single_calls"] = _positions(rows, "raw_label", "per_order_consistent")
    return result


def _positions(rows: Iterable[Mapping[str, Any]], label_key: str, consistent_key: str) -> dict[str, Any]:
    agree = total = first = decided = 0
    for row in rows:
        calls = {c["tag"]: c for c in row.get("calls", ())}
        labels = [calls.get(o, {}).get(label_key, calls.get(o, {}).get("label")) for o in ("ab", "ba")]
        for label in labels:
            if label in ("A", "B"):
                decided += 1
                first += label == "A"
        if None not in labels:
            total += 1
            agree += bool(row.get(consistent_key, row.get("consistent")))
    return {"pairs": total, "consistency": agree / total if total else math.nan,
            "flip_rate": 1 - agree / total if total else math.nan,
            "decided_calls": decided, "first_position_win_rate": first / decided if decided else math.nan}


def length_bias(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """How often the LONGER answer wins, over calls with a non-tie verdict and answers of different lengths
    (0.5 = no length preference), and the same over combined row verdicts."""
    call_wins = call_n = row_wins = row_n = 0
    for row in rows:
        la, lb = row["lengths"]["a"], row["lengths"]["b"]
        if la == lb:
            continue
        longer = "a" if la > lb else "b"
        for call in row.get("calls", ()):
            if call.get("verdict") in ("a", "b"):
                call_n += 1
                call_wins += call["verdict"] == longer
        if row.get("verdict") in ("a", "b"):
            row_n += 1
            row_wins += row["verdict"] == longer
    return {"calls": call_n, "longer_wins_rate": call_wins / call_n if call_n else math.nan,
            "rows": row_n, "longer_wins_rate_combined": row_wins / row_n if row_n else math.nan}


# ------------------------------------------------------------------------------------------- agreement
def tie_discounted_score(x: str, y: str) -> float:
    """1 if the same label, 0.5 if exactly one says tie, else 0 (the LIMA paper's agreement score)."""
    if x == y:
        return 1.0
    return 0.5 if "tie" in (x, y) else 0.0


def tie_discounted_agreement(x: Mapping[Hashable, str | None], y: Mapping[Hashable, str | None], *,
                             cluster_of: Callable[[Hashable], Hashable] | None = None,
                             level: float = 0.95) -> dict[str, Any]:
    """Mean tie-discounted score over the items both annotators labelled (labels 'a' / 'b' / 'tie'), and the
    exact-agreement rate, each with a CI; ``cluster_of(item)`` names the item's prompt (None: each item one)."""
    items = [k for k in x if k in y and x[k] is not None and y[k] is not None]
    scores = [tie_discounted_score(x[k], y[k]) for k in items]
    prompts = [cluster_of(k) for k in items] if cluster_of else None
    r = rates({"agreement": scores, "exact": [float(s == 1.0) for s in scores]}, prompts, level=level)
    return {"n": len(items), **r}


def agreement_table(annotators: Mapping[str, Mapping[Hashable, str | None]], *,
                    cluster_of: Callable[[Hashable], Hashable] | None = None) -> list[dict[str, Any]]:
    """Tie-discounted agreement of every pair of annotators (humans and judges alike)."""
    names = sorted(annotators)
    return [{"x": p, "y": q, **tie_discounted_agreement(annotators[p], annotators[q], cluster_of=cluster_of)}
            for i, p in enumerate(names) for q in names[i + 1:]]
