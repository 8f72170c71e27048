"""Statistics of judgments: pure functions from verdicts / rows to numbers (no I/O, no mutation).

Pairwise verdicts are from model a's side: 'a' = a wins, 'b' = a loses, 'tie'; ``None`` = missing, counted and
excluded from the rates. Confidence intervals are 95% by default: percentile bootstrap over items for rates
(seeded, so a report is reproducible), Student t for a Likert mean.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

OUTCOMES = ("win", "tie", "loss")
_OUTCOME_OF = {"a": "win", "tie": "tie", "b": "loss"}


def bootstrap_rate_ci(flags: Sequence[float], *, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of 0/1 flags (resampling items)."""
    x = np.asarray(flags, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def win_tie_loss(verdicts: Iterable[str | None], *, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> dict[str, Any]:
    """Win / tie / loss rates of model a with bootstrap CIs; missing verdicts are counted, not rated."""
    verdicts = list(verdicts)
    judged = [_OUTCOME_OF[v] for v in verdicts if v is not None]
    counts = Counter(judged)
    n = len(judged)
    result: dict[str, Any] = {"n": n, "missing": len(verdicts) - n, "counts": {k: counts[k] for k in OUTCOMES}}
    for k in OUTCOMES:
        flags = [float(o == k) for o in judged]
        result[k] = counts[k] / n if n else math.nan
        result[f"{k}_ci"] = list(bootstrap_rate_ci(flags, n_boot=n_boot, seed=seed, level=level))
    return result


def label_rates(labels: Iterable[str | None], order: Sequence[str], *, n_boot: int = 2000,
                seed: int = 0) -> dict[str, Any]:
    """Distribution of categorical labels (Fail/Pass/Excellent, safe/unsafe) with bootstrap CIs."""
    labels = list(labels)
    judged = [x for x in labels if x is not None]
    n = len(judged)
    result: dict[str, Any] = {"n": n, "missing": len(labels) - n, "counts": {k: judged.count(k) for k in order}}
    for k in order:
        result[k] = judged.count(k) / n if n else math.nan
        result[f"{k}_ci"] = list(bootstrap_rate_ci([float(x == k) for x in judged], n_boot=n_boot, seed=seed))
    return result


# ------------------------------------------------------------------------------------------------ Likert
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + aa * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student t cumulative distribution function."""
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse of :func:`t_cdf` by bisection (no SciPy needed)."""
    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def likert_summary(scores: Iterable[float | None], *, level: float = 0.95) -> dict[str, Any]:
    """Mean score with a two-sided Student-t CI: mean +- t_{(1+level)/2, n-1} * sd / sqrt(n)."""
    scores = list(scores)
    x = [float(s) for s in scores if s is not None]
    n = len(x)
    out: dict[str, Any] = {"n": n, "missing": len(scores) - n, "mean": math.nan, "sd": math.nan,
                           "ci": [math.nan, math.nan], "level": level}
    if n == 0:
        return out
    mean = sum(x) / n
    out["mean"] = mean
    if n > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
        half = t_quantile((1 + level) / 2, n - 1) * sd / math.sqrt(n)
        out.update(sd=sd, ci=[mean - half, mean + half])
    return out


# ------------------------------------------------------------------------------------ judge behaviour
def position_consistency(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Of the pairs judged in both orders with both parsed: how often the two orders agree (and flip), and how
    often a non-tie call picks the answer shown FIRST (0.5 = no position preference)."""
    agree = total = first = decided = 0
    for row in rows:
        calls = {c["tag"]: c for c in row.get("calls", ())}
        labels = [calls.get(o, {}).get("label") for o in ("ab", "ba")]
        for label in labels:
            if label in ("A", "B"):
                decided += 1
                first += label == "A"
        if None not in labels:
            total += 1
            agree += bool(row.get("consistent"))
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


def tie_discounted_agreement(x: Mapping[str, str | None], y: Mapping[str, str | None]) -> dict[str, Any]:
    """Mean tie-discounted score over the items both annotators labelled (labels 'a' / 'b' / 'tie')."""
    items = [k for k in x if k in y and x[k] is not None and y[k] is not None]
    scores = [tie_discounted_score(x[k], y[k]) for k in items]
    return {"n": len(items), "agreement": sum(scores) / len(scores) if scores else math.nan,
            "exact": sum(s == 1.0 for s in scores) / len(scores) if scores else math.nan}


def agreement_table(annotators: Mapping[str, Mapping[str, str | None]]) -> list[dict[str, Any]]:
    """Tie-discounted agreement of every pair of annotators (humans and judges alike)."""
    names = sorted(annotators)
    return [{"x": p, "y": q, **tie_discounted_agreement(annotators[p], annotators[q])}
            for i, p in enumerate(names) for q in names[i + 1:]]
