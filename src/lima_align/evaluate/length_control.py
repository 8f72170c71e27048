"""Length-controlled win rate of pairwise judgments: what the judge would prefer if both answers were as long.

LLM judges favour longer answers, and so a model can buy win rate with verbosity. Following AlpacaEval 2's
length-controlled win rate (Dubois et al. 2024), we fit a logistic model of the judge's preference for model a
over model b and predict it with the length difference set to zero::

    logit P(a preferred | row i) = theta + beta * tanh(d_i / s) [+ gamma_prompt(i)]
    LC win rate = mean over prompts p of sigmoid(theta [+ gamma_p])

* ``theta``, the model term: a's advantage over b once length is accounted for.
* ``d_i = len(a) - len(b)`` in characters and ``s`` its standard deviation over the rows. tanh bounds the
  term, so a few extreme length gaps cannot dominate the fit, and ``d`` is scaled but NOT centred, so that 0
  still means "equal lengths", the counterfactual the metric asks about. ``beta`` (``length_coef``) > 0: the
  judge leans towards the LONGER answer (a larger ``len(a) - len(b)`` raises P(a preferred)); < 0: the
  shorter.
* ``gamma_p``, the prompt term. AlpacaEval uses a per-instruction difficulty estimated once from the judgments
  of many leaderboard models, frozen, plus a per-model slope on it. We compare one pair of models per prompt
  and have no such external estimate, so a per-prompt offset here is a's advantage on that prompt. With one
  row per prompt it would have a single observation each, interpolate the judgments and leave the length
  coefficient unidentified, so it is DROPPED (``prompt_term = "none"``). When some prompt has several rows
  (several samples per prompt), offsets are identified from within-prompt variation, and we fit them with a
  ridge penalty ``prompt_l2 / 2 * sum(gamma**2)``, the MAP estimate of a random prompt intercept with prior sd
  ``1 / sqrt(prompt_l2)`` on the logit scale (``prompt_term = "ridge"``), so that a prompt with two samples
  does not get an unbounded offset.

Targets are the judge's soft preference (``soft_preference``, P(a better) + P(tie)/2, written by the weighted judges) when a row has one, otherwise the hard
verdict (a = 1, b = 0, tie = 0.5). The fit minimises the log loss on these soft targets directly (scipy
L-BFGS), so soft preferences need no duplication trick. Missing rows (``missing`` true, or no verdict and no
preference) are excluded and counted. The confidence interval is a seeded percentile bootstrap over prompts:
the rows of one prompt id are drawn together and the whole fit is redone per draw.

This is a pure function from judgment rows to numbers: no I/O, rows are never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

HARD_TARGET = {"a": 1.0, "b": 0.0, "tie": 0.5}
# A tiny ridge on theta and beta keeps them finite when the judgments are separable (a wins every row);
# against hundreds of rows' log loss it moves the estimates by far less than their standard error.
_EPS_L2 = 1e-3


@dataclass(frozen=True)
class _Data:
    """The rows that were judged, as arrays: target, length difference, prompt index."""

    y: np.ndarray  # P(a preferred), in [0, 1]
    delta: np.ndarray  # len(a) - len(b), characters
    prompt: np.ndarray  # index into ``prompts``
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class _Fit:
    theta: float
    beta: float
    gamma: np.ndarray  # per-prompt offsets (zeros when the prompt term is dropped)
    scale: float  # s, the standard deviation of d used to standardise it
    prompt_term: str  # "ridge" or "none"


def preference_target(row: Mapping[str, Any]) -> float | None:
    """P(a preferred) for one judgment row: its ``soft_preference`` if present, else from the verdict; None =
    missing (``missing`` true, or nothing to score)."""
    if row.get("missing"):
        return None
    soft = row.get("soft_preference")
    if soft is not None:
        return min(1.0, max(0.0, float(soft)))
    return HARD_TARGET.get(row.get("verdict"))


def _lengths(row: Mapping[str, Any]) -> tuple[float, float]:
    lengths = row.get("lengths") or {}
    answers = row.get("answers") or {}
    return tuple(float(lengths[k]) if lengths.get(k) is not None else float(len(answers.get(k) or ""))
                 for k in ("a", "b"))  # type: ignore[return-value]


def _collect(rows: Sequence[Mapping[str, Any]]) -> tuple[_Data, int]:
    ys, deltas, ids = [], [], []
    missing = 0
    for row in rows:
        y = preference_target(row)
        if y is None:
            missing += 1
            continue
        len_a, len_b = _lengths(row)
        ys.append(y)
        deltas.append(len_a - len_b)
        ids.append(str(row.get("id")))
    prompts = tuple(dict.fromkeys(ids))
    index = {p: i for i, p in enumerate(prompts)}
    data = _Data(np.asarray(ys, float), np.asarray(deltas, float), np.asarray([index[p] for p in ids], int),
                 prompts)
    return data, missing


def _fit(data: _Data, prompt_l2: float) -> _Fit:
    """Minimise the soft-target log loss of theta + beta * tanh(d / s) [+ gamma_prompt]."""
    scale = float(np.std(data.delta, ddof=1)) if data.y.size > 1 else 0.0
    x = np.tanh(data.delta / scale) if scale > 0 else np.zeros_like(data.delta)
    n_prompts = len(data.prompts)
    use_prompts = data.y.size > n_prompts  # some prompt has >= 2 rows: offsets are identified within prompts
    k = n_prompts if use_prompts else 0

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        theta, beta, gamma = w[0], w[1], w[2:]
        z = theta + beta * x + (gamma[data.prompt] if k else 0.0)
        r = expit(z) - data.y  # d(log loss)/dz
        value = np.sum(np.logaddexp(0.0, z) - data.y * z)
        value += 0.5 * _EPS_L2 * (theta ** 2 + beta ** 2) + 0.5 * prompt_l2 * np.sum(gamma ** 2)
        grad = np.empty_like(w)
        grad[0] = r.sum() + _EPS_L2 * theta
        grad[1] = (r * x).sum() + _EPS_L2 * beta
        if k:
            grad[2:] = np.bincount(data.prompt, weights=r, minlength=k) + prompt_l2 * gamma
        return float(value), grad

    result = minimize(loss, np.zeros(2 + k), jac=True, method="L-BFGS-B",
                      options={"maxiter": 1000, "gtol": 1e-9})
    gamma = result.x[2:] if k else np.zeros(n_prompts)
    return _Fit(float(result.x[0]), float(result.x[1]), gamma, scale, "ridge" if k else "none")


def _lc(fit: _Fit) -> float:
    """Predicted P(a preferred) at zero length difference, averaged over prompts (each prompt counts once)."""
    return float(np.mean(expit(fit.theta + fit.gamma)))


def _members(data: _Data) -> list[np.ndarray]:
    """Row indices of each prompt."""
    order = np.argsort(data.prompt, kind="stable")
    bounds = np.cumsum(np.bincount(data.prompt, minlength=len(data.prompts)))[:-1]
    return np.split(order, bounds)


def _resample(data: _Data, members: list[np.ndarray], rng: np.random.Generator) -> _Data:
    """A bootstrap draw of prompts; a prompt drawn twice becomes two prompts (its own offset each time)."""
    drawn = rng.integers(0, len(members), size=len(members))
    take = np.concatenate([members[p] for p in drawn])
    new_prompt = np.repeat(np.arange(len(drawn)), [members[p].size for p in drawn])
    return _Data(data.y[take], data.delta[take], new_prompt, tuple(str(j) for j in range(len(drawn))))


def _bootstrap_ci(data: _Data, prompt_l2: float, n_boot: int, seed: int,
                  confidence: float) -> list[float] | None:
    if n_boot <= 0 or data.y.size == 0:
        return None
    rng = np.random.default_rng(seed)
    members = _members(data)
    draws = [_lc(_fit(_resample(data, members, rng), prompt_l2)) for _ in range(n_boot)]
    alpha = (1.0 - confidence) / 2.0
    return [float(np.quantile(draws, alpha)), float(np.quantile(draws, 1.0 - alpha))]


def _pair_key(row: Mapping[str, Any]) -> tuple[str | None, str | None]:
    models = row.get("models") or {}
    return models.get("a"), models.get("b")


def _pair(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    pairs = set(map(_pair_key, rows))
    if len(pairs) > 1:
        raise ValueError(f"rows compare {len(pairs)} model pairs {sorted(pairs, key=str)}; "
                         "use length_controlled_by_pair (one fit per pair)")
    return dict(zip(("a", "b"), pairs.pop())) if pairs else None


def length_controlled_win_rate(rows: Iterable[Mapping[str, Any]], *, n_boot: int = 200, seed: int = 0,
                               confidence: float = 0.95, prompt_l2: float = 1.0) -> dict[str, Any]:
    """The length-controlled win rate of model a over model b from one pair's pairwise judgment rows.

    Returns ``lc_win_rate`` (the fitted P(a preferred) at equal lengths, averaged over prompts), ``lc_ci`` (a
    ``confidence`` percentile bootstrap over prompts, ``n_boot`` seeded draws; None if ``n_boot`` is 0),
    ``raw_win_rate`` (mean target = win + tie/2 for hard verdicts), ``length_coef`` (beta: > 0 = the judge
    prefers the longer answer), ``intercept`` (theta), ``length_scale`` (s, characters), ``prompt_term``
    ("ridge" or "none", see the module docstring), ``n`` (rows scored), ``n_prompts``, ``missing`` (rows
    excluded), ``models``, ``n_boot`` and ``confidence``. Rates are fractions; None when no row was scored.
    """
    rows = list(rows)
    data, missing = _collect(rows)
    out: dict[str, Any] = {"models": _pair(rows), "n": int(data.y.size), "n_prompts": len(data.prompts),
                           "missing": missing, "n_boot": n_boot, "confidence": confidence}
    if data.y.size == 0:
        return {**out, "lc_win_rate": None, "lc_ci": None, "raw_win_rate": None, "length_coef": None,
                "intercept": None, "length_scale": None, "prompt_term": None}
    fit = _fit(data, prompt_l2)
    return {**out, "lc_win_rate": _lc(fit), "lc_ci": _bootstrap_ci(data, prompt_l2, n_boot, seed, confidence),
            "raw_win_rate": float(data.y.mean()), "length_coef": fit.beta, "intercept": fit.theta,
            "length_scale": fit.scale, "prompt_term": fit.prompt_term}


def length_controlled_by_pair(rows: Iterable[Mapping[str, Any]], **options: Any) -> list[dict[str, Any]]:
    """:func:`length_controlled_win_rate` for each (model a, model b) pair in ``rows``, first seen first."""
    groups: dict[tuple[str | None, str | None], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_pair_key(row), []).append(row)
    return [length_controlled_win_rate(group, **options) for group in groups.values()]
