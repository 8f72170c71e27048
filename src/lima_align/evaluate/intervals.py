"""Confidence intervals when the PROMPT, not the row, is the independent unit. Pure numpy / scipy functions.

A judgments file has one row per (prompt id, sample), and a pairwise row holds two calls (both orders) on one
pair: the samples of one prompt, and the two orders of one pair, share the prompt and are correlated. Treating
them as independent makes every interval too narrow, so here the prompt is the unit throughout:

* **rates** (win / tie / loss, Fail / Pass / Excellent, safe / unsafe, agreement): the percentile **cluster
  bootstrap** (prompts resampled with replacement, all rows of a prompt together) when there are at least
  ``MIN_BOOTSTRAP_PROMPTS`` prompts and at least ``MIN_MIXED_PROMPTS`` prompts on each side of the rate (some
  row above 0, some row below 1); otherwise the **Wilson score interval at an effective sample size**
  (Korn & Graubard 1998): ``n_eff = n / max(1, deff * (t_{k-1} / z)^2)``, with ``deff`` the design effect
  estimated from the per-prompt totals and the t / z factor paying for estimating it from only k prompts. At a
  rate of 0 or 1 the design effect cannot be estimated and each prompt counts once (``n_eff = k``). Wilson never
  has zero width for a finite n, so neither does any rate here (the old per-row bootstrap gave [1, 1] at 5/5).
* **means** (Likert 1-6): a Student-t interval over the per-prompt means (k - 1 degrees of freedom), and the
  difference of two arms by a paired t over per-prompt differences (same prompts) or Welch's t (otherwise).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
from scipy import stats

MIN_BOOTSTRAP_PROMPTS = 30  # below this the percentile bootstrap under-covers (about 91-93% at 20 prompts)
MIN_MIXED_PROMPTS = 5  # a rate carried by fewer prompts than this (on either side) is near-degenerate for it


def z_value(level: float) -> float:
    """The two-sided normal quantile for ``level`` (1.95996 at 0.95)."""
    return float(stats.norm.ppf((1 + level) / 2))


def wilson_interval(successes: Any, n: Any, *, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``successes / n``; arrays broadcast, ``n`` may be an effective (fractional) size.

    Solves ``(p_hat - p)^2 = z^2 p (1 - p) / n`` for p: centre ``(p_hat + z^2/2n) / (1 + z^2/n)``, half-width
    ``z / (1 + z^2/n) * sqrt(p_hat (1 - p_hat) / n + z^2 / 4n^2)``.
    """
    s, n = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    z2 = z_value(level) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        p = s / n
        denom = 1 + z2 / n
        centre = (p + z2 / (2 * n)) / denom
        half = np.sqrt(z2) / denom * np.sqrt(np.clip(p * (1 - p), 0, None) / n + z2 / (4 * n * n))
    # at 0 and 1 the bound is exact (rounding would give 0.9999999999999999)
    return np.where(s <= 0, 0.0, np.clip(centre - half, 0, 1)), np.where(s >= n, 1.0, np.clip(centre + half, 0, 1))


def prompt_totals(values: Any, prompts: Sequence[Hashable] | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """Per-prompt sums of row values and rows per prompt.

    ``values``: (rows,) or (rows, j); ``prompts``: one id per row (None: every row its own prompt). Returns
    sums (k,) or (j, k), sizes (k,) and the k ids in first-seen order.
    """
    x = np.asarray(values, dtype=float)
    flat = x.ndim == 1
    x = x.reshape(len(x), -1)
    ids = list(range(len(x))) if prompts is None else list(prompts)
    if len(ids) != len(x):
        raise ValueError(f"{len(x)} values but {len(ids)} prompt ids")
    order = list(dict.fromkeys(ids))
    index = {p: i for i, p in enumerate(order)}
    which = np.fromiter((index[p] for p in ids), dtype=int, count=len(ids))
    sums = np.zeros((x.shape[1], len(order)))
    np.add.at(sums.T, which, x)
    sizes = np.bincount(which, minlength=len(order)).astype(float)
    return (sums[0] if flat else sums), sizes, order


def design_effect(sums: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Variance of the pooled rate ``sum(sums) / sum(sizes)`` with prompts as the unit (the linearised
    ratio-estimator variance, k / (k - 1) small-sample factor) over the variance if every row were independent,
    ``p (1 - p) / n``. NaN where it is undefined: one prompt, or a rate of 0 or 1."""
    k, n = sizes.size, sizes.sum()
    p = sums.sum(axis=-1) / n
    if k < 2:
        return np.full(np.shape(p), math.nan)
    var_prompts = k / (k - 1) * ((sums - p[..., None] * sizes) ** 2).sum(axis=-1) / n**2
    with np.errstate(divide="ignore", invalid="ignore"):
        deff = var_prompts / (p * (1 - p) / n)
    return np.where((p > 0) & (p < 1), deff, math.nan)


def effective_n(sums: np.ndarray, sizes: np.ndarray, *, level: float = 0.95) -> np.ndarray:
    """The Korn-Graubard effective sample size ``n / max(1, deff * (t_{k-1} / z)^2)``; k where the design effect
    is undefined (each prompt counted once: nothing tells how alike a prompt's rows are)."""
    k, n = sizes.size, sizes.sum()
    deff = design_effect(sums, sizes)
    if k < 2:
        return np.full(np.shape(deff), float(k))
    df_factor = (stats.t.ppf((1 + level) / 2, k - 1) / z_value(level)) ** 2
    # never narrower than Wilson over all rows as if independent: under a prompt effect deff >= 1
    inflation = np.maximum(1.0, np.nan_to_num(deff, nan=1.0) * df_factor)
    return np.where(np.isnan(deff), float(k), n / inflation)


def cluster_bootstrap(sums: np.ndarray, sizes: np.ndarray, *, level: float = 0.95, n_boot: int = 2000,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the pooled rate with prompts resampled with replacement (all rows of a prompt
    together). ``sums`` (..., k) share one set of draws, so win / tie / loss are resampled consistently."""
    k = sizes.size
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot).astype(float)  # times each prompt is drawn
    rates = (sums @ draws.T) / (draws @ sizes)
    alpha = (1 - level) / 2
    return np.quantile(rates, alpha, axis=-1), np.quantile(rates, 1 - alpha, axis=-1)


def rate_cis(sums: np.ndarray, sizes: np.ndarray, *, level: float = 0.95, n_boot: int = 2000,
             seed: int = 0) -> dict[str, np.ndarray]:
    """CIs of the pooled rates ``sums[..., :].sum() / sizes.sum()`` (vectorised over leading axes): the cluster
    bootstrap where it is usable, else Wilson at the effective n (see the module docstring).

    Returns arrays ``rate``, ``lo``, ``hi``, ``bootstrap`` (True where the bootstrap was used), ``n_effective``.
    """
    sums = np.asarray(sums, dtype=float)
    rate = sums.sum(axis=-1) / sizes.sum()
    n_eff = effective_n(sums, sizes, level=level)
    lo, hi = wilson_interval(rate * n_eff, n_eff, level=level)
    usable = ((sizes.size >= MIN_BOOTSTRAP_PROMPTS) & ((sums > 0).sum(axis=-1) >= MIN_MIXED_PROMPTS)
              & ((sums < sizes).sum(axis=-1) >= MIN_MIXED_PROMPTS))
    if usable.any():
        b_lo, b_hi = cluster_bootstrap(sums, sizes, level=level, n_boot=n_boot, seed=seed)
        lo, hi = np.where(usable, b_lo, lo), np.where(usable, b_hi, hi)
    return {"rate": rate, "lo": lo, "hi": hi, "bootstrap": np.broadcast_to(usable, rate.shape),
            "n_effective": n_eff}


def design_label(sizes: np.ndarray, unit: str = "sample") -> str:
    """``"40 prompts x 5 samples"`` (``x 3-5 samples`` when prompts have different numbers of rows)."""
    k = int(sizes.size)
    if k == 0:
        return "0 prompts"
    lo, hi = int(sizes.min()), int(sizes.max())
    per = f"{lo}" if lo == hi else f"{lo}-{hi}"
    return f"{k} prompt{'s' if k != 1 else ''} x {per} {unit}{'s' if hi != 1 else ''}"


def design(sizes: np.ndarray, unit: str = "sample") -> dict[str, Any]:
    """``n_prompts``, ``n_samples`` (rows: samples, or calls) and the display string of a design."""
    return {"n_prompts": int(sizes.size), "n_samples": int(sizes.sum()), "design": design_label(sizes, unit)}


def rate_interval(values: Sequence[float], prompts: Sequence[Hashable] | None = None, *, level: float = 0.95,
                  n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """One rate (the mean of per-row values in [0, 1]) with its prompt-clustered CI, method and design."""
    if len(values) == 0:
        return {"rate": math.nan, "ci": [math.nan, math.nan], "ci_method": "none", "n_effective": 0.0,
                **design(np.zeros(0))}
    sums, sizes, _ = prompt_totals(values, prompts)
    r = rate_cis(sums, sizes, level=level, n_boot=n_boot, seed=seed)
    return {"rate": float(r["rate"]), "ci": [float(r["lo"]), float(r["hi"])],
            "ci_method": "cluster-bootstrap" if r["bootstrap"] else "wilson",
            "n_effective": float(r["n_effective"]), **design(sizes)}


# ------------------------------------------------------------------------------------------------ means
def t_interval(values: Any, *, axis: int = -1, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Student-t interval of the mean along ``axis``: mean +- t_{(1+level)/2, n-1} * sd / sqrt(n)."""
    x = np.asarray(values, dtype=float)
    n = x.shape[axis]
    if n < 2:
        nan = np.full(np.delete(x.shape, axis if axis >= 0 else x.ndim + axis), math.nan)
        return nan, nan
    mean = x.mean(axis=axis)
    half = stats.t.ppf((1 + level) / 2, n - 1) * stats.sem(x, axis=axis)  # sem 0 -> zero width, not NaN
    return mean - half, mean + half


def mean_difference(a: Mapping[str, float], b: Mapping[str, float], *, level: float = 0.95) -> dict[str, Any]:
    """Difference of the means of two arms' per-prompt means (``a - b``) with its CI.

    Paired t over the per-prompt differences when both arms have the same prompts; Welch's t (unequal variances,
    Welch-Satterthwaite df) over the two sets of prompt means otherwise. Result: ``diff``, ``ci``, ``p_value``,
    ``df``, ``ci_method`` (``paired-t`` / ``welch-t``), ``n_prompts`` {a, b, paired}, ``level``."""
    xa, xb = np.fromiter(a.values(), float, len(a)), np.fromiter(b.values(), float, len(b))
    paired = set(a) == set(b)
    out: dict[str, Any] = {"diff": math.nan, "ci": [math.nan, math.nan], "p_value": math.nan, "df": math.nan,
                           "ci_method": "paired-t" if paired else "welch-t", "level": level,
                           "n_prompts": {"a": len(a), "b": len(b), "paired": len(a) if paired else 0}}
    if len(a) == 0 or len(b) == 0:
        return out
    if paired:
        xb = np.fromiter((b[p] for p in a), float, len(a))  # same order as a
    out["diff"] = float(xa.mean() - xb.mean())
    if (len(a) < 2) or (len(b) < 2):
        return out
    with warnings.catch_warnings():  # a constant difference (zero variance) makes scipy warn, not fail
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(xa, xb) if paired else stats.ttest_ind(xa, xb, equal_var=False)
        ci = res.confidence_interval(level)
    out.update(ci=[float(ci.low), float(ci.high)], p_value=float(res.pvalue), df=float(res.df))
    return out
