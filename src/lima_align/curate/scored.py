"""The model-scored selection strategies: which ``n`` of a pool, by a scorer model's or a judge's numbers.

| name | what it takes | from |
|---|---|---|
| ``ifd`` | the ``n`` rows with the HIGHEST instruction-following difficulty (:mod:`lima_align.curate.scoring`) among those with IFD <= ``scoring.ifd_max`` (default 1: a row whose prompt makes its answer less likely is a mismatched pair and is refused); ``scoring.ifd_keep: low`` takes the lowest instead | Cherry (Li et al. 2024), Superfiltering (Li et al. 2024: a GPT-2-size scorer ranks as well as a 7B one) |
| ``quality`` | the ``n`` rows a judge rates highest (1-6) for the response as something to imitate, after refusing rows under ``scoring.quality_min`` | AlpaGasus (Chen et al. 2024) |
| ``complexity`` | the same with the instruction's complexity rating and ``scoring.complexity_min`` | Deita's complexity score (Liu et al. 2024) |
| ``deita`` | rows ranked by complexity x quality, then taken in that order unless the prompt embedding is closer than ``scoring.deita_max_similarity`` (cosine) to one already taken | Deita's score-first, diversity-aware selection (Liu et al. 2024) |

Every chosen row records its numbers in ``meta["mix"]["scores"]`` (with its rank), and the draw's report entry
records who scored (the scorer model's identity and method version, or the judge and prompt version), the
distribution over the pool and over the chosen rows, and every refusal by reason. Ties rank in pool order.
Our deita embeds the prompt only (the bundled MiniLM of the ``diverse`` strategy), where Deita embeds the whole
conversation with its own model.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from lima_align.conversation import Example
from lima_align.curate.scoring import IFD_METHOD, IFDScorer, ScoringConfig, ifd_identity, ifd_scores
from lima_align.curate.strategies import STRATEGIES, Context, Selection, Strategy

NEEDS_JUDGE = {"quality": ("quality",), "complexity": ("complexity",), "deita": ("complexity", "quality")}


class Scorers:
    """What the scored strategies ask for; the scorer model is loaded on first use and kept for the mix."""

    def __init__(self, cfg: ScoringConfig, log: Callable[[str], None] = lambda m: None, judge_client: Any = None):
        self.cfg, self.log, self.judge_client = cfg, log, judge_client
        self._model: IFDScorer | None = None

    def _scorer(self) -> IFDScorer:
        if self._model is None:
            self._model = IFDScorer.load(self.cfg.scorer, self.cfg.max_tokens, self.cfg.batch_tokens, self.cfg.device)
        return self._model

    def ifd(self, examples: Sequence[Example]) -> list[dict[str, Any]]:
        return [s.to_dict() for s in ifd_scores(examples, self.cfg, self._scorer, self.log)]

    def ratings(self, aspect: str, examples: Sequence[Example]) -> list[float | None]:
        from lima_align.curate.rating import rate

        return rate(examples, self.cfg, aspect, self.judge_client, self.log)

    def provenance(self, strategy: str) -> dict[str, Any]:
        """Who scores ``strategy``'s rows: the mix's stage key and report carry this."""
        if strategy == "ifd":
            return {"model": ifd_identity(self.cfg), "method": IFD_METHOD,
                    "max_tokens": self.cfg.max_tokens}
        from lima_align.curate.rating import rating_provenance

        return {aspect: rating_provenance(self.cfg, aspect) for aspect in NEEDS_JUDGE[strategy]}


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    q = np.quantile(np.asarray(values, dtype=float), [0.0, 0.25, 0.5, 0.75, 1.0])
    return dict(zip(("min", "q25", "median", "q75", "max"), (round(float(x), 4) for x in q)))


def _take(pool: Sequence[Example], ranked: list[int], n: int, scores: dict[int, dict[str, Any]], key: str,
          refused: dict[str, int], audit: dict[str, Any]) -> Selection:
    """The first ``n`` of ``ranked`` (pool indices, best first), returned in pool order with their scores."""
    picked = ranked[:n]
    for rank, i in enumerate(picked, 1):
        scores[i]["rank"] = rank
    order = sorted(picked)
    audit["pool"] = _spread([s[key] for s in scores.values() if s.get(key) is not None
                             and not math.isnan(s[key])])
    audit["chosen"] = _spread([scores[i][key] for i in picked])
    return Selection([pool[i] for i in order], refused={k: v for k, v in refused.items() if v},
                     audit=audit, scores=[scores[i] for i in order])


def _scorers(ctx: Context) -> Scorers:
    if ctx.scores is None:
        raise ValueError("the scored strategies need scorers (build_mix makes them from the recipe's 'scoring')")
    return ctx.scores


def select_ifd(pool: Sequence[Example], n: int, ctx: Context) -> Selection:
    """The ``n`` rows of highest (``ifd_keep: low``: lowest) IFD at or under ``ifd_max``."""
    sc = _scorers(ctx)
    answered = [i for i, ex in enumerate(pool) if not ex.is_prompt_only]
    values = sc.ifd([pool[i] for i in answered]) if answered else []
    scores = dict(zip(answered, values))
    refused = {"no_response": len(pool) - len(answered), "ifd_not_scored": 0, "ifd_above_max": 0}
    eligible = []
    for i, s in scores.items():
        if math.isnan(s["ifd"]):
            refused["ifd_not_scored"] += 1
        elif sc.cfg.ifd_max is not None and s["ifd"] > sc.cfg.ifd_max:
            refused["ifd_above_max"] += 1
        else:
            eligible.append(i)
    sign = -1.0 if sc.cfg.ifd_keep == "high" else 1.0
    ranked = sorted(eligible, key=lambda i: (sign * scores[i]["ifd"], i))
    audit = {"scored_by": sc.provenance("ifd"), "keep": sc.cfg.ifd_keep, "ifd_max": sc.cfg.ifd_max}
    return _take(pool, ranked, n, scores, "ifd", refused, audit)


def _rated(pool: Sequence[Example], ctx: Context, aspects: Sequence[str]) -> tuple[Scorers, dict, dict[str, int]]:
    """Each answered row's ratings; rows without a response, without a rating or under a minimum refused."""
    sc = _scorers(ctx)
    answered = [i for i, ex in enumerate(pool) if not ex.is_prompt_only]
    scores: dict[int, dict[str, Any]] = {i: {} for i in answered}
    for aspect in aspects:
        for i, value in zip(answered, sc.ratings(aspect, [pool[i] for i in answered]) if answered else []):
            scores[i][aspect] = None if value is None else round(value, 4)
    refused = {"no_response": len(pool) - len(answered)}
    minimum = {"quality": sc.cfg.quality_min, "complexity": sc.cfg.complexity_min}
    kept = {}
    for i, s in scores.items():
        reason = next((f"{a}_unrated" for a in aspects if s[a] is None), None) or next(
            (f"{a}_below_min" for a in aspects if s[a] < minimum[a]), None)
        if reason:
            refused[reason] = refused.get(reason, 0) + 1
        else:
            kept[i] = s
    return sc, kept, refused


def _select_rating(aspect: str) -> Callable[[Sequence[Example], int, Context], Selection]:
    def select(pool: Sequence[Example], n: int, ctx: Context) -> Selection:
        sc, scores, refused = _rated(pool, ctx, (aspect,))
        ranked = sorted(scores, key=lambda i: (-scores[i][aspect], i))
        audit = {"scored_by": sc.provenance(aspect), f"{aspect}_min": getattr(sc.cfg, f"{aspect}_min")}
        return _take(pool, ranked, n, scores, aspect, refused, audit)

    select.__doc__ = f"The ``n`` rows the judge rates highest for {aspect}, none under ``{aspect}_min``."
    select.__name__ = f"select_{aspect}"
    return select


def select_deita(pool: Sequence[Example], n: int, ctx: Context) -> Selection:
    """Rank by complexity x quality; take in that order, skipping a prompt too similar to one taken."""
    if ctx.embedder is None:
        raise ValueError("the deita strategy needs an embedder")
    sc, scores, refused = _rated(pool, ctx, ("complexity", "quality"))
    for s in scores.values():
        s["deita"] = round(s["complexity"] * s["quality"], 4)
    ranked = sorted(scores, key=lambda i: (-scores[i]["deita"], i))
    taken: list[int] = []
    refused["deita_too_similar"] = 0
    if ranked:
        vectors = np.asarray(ctx.embedder.encode([pool[i].prompt for i in ranked]), dtype=np.float32)
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        chosen_rows: list[int] = []
        for row, i in enumerate(ranked):
            if len(taken) == n:
                break
            nearest = float(np.max(unit[chosen_rows] @ unit[row])) if chosen_rows else -1.0
            if nearest > sc.cfg.deita_max_similarity:
                refused["deita_too_similar"] += 1
                continue
            scores[i]["nearest_similarity"] = round(nearest, 4) if chosen_rows else None
            taken.append(i)
            chosen_rows.append(row)
    audit = {"scored_by": sc.provenance("deita"), "max_similarity": sc.cfg.deita_max_similarity,
             "quality_min": sc.cfg.quality_min, "complexity_min": sc.cfg.complexity_min}
    return _take(pool, taken, n, scores, "deita", refused, audit)


SCORED_STRATEGIES: dict[str, Strategy] = {"ifd": select_ifd, "quality": _select_rating("quality"),
                                           "complexity": _select_rating("complexity"), "deita": select_deita}
SCORED = tuple(SCORED_STRATEGIES)
ALL_STRATEGIES: dict[str, Strategy] = {**STRATEGIES, **SCORED_STRATEGIES}  # every strategy a mix recipe can name
