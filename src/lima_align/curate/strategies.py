"""Selection strategies: how ``n`` examples are drawn from one input's deduplicated candidate pool.

Each strategy is the arm of an ablation (the paper's or later work's) and is a pure function
``(pool, n, ctx) -> Selection``: the chosen examples in pool order, plus the candidates it refused, counted by
reason (never silently). The mix records the strategy's name in every written example's ``meta["mix"]``.

| name | what it takes | from |
|---|---|---|
| ``random`` | ``n`` uniformly at random (seeded) | the control arm |
| ``lima`` | the paper's filters and mix: Stack Exchange rows must pass the paper's answer rules (top answer score >= 10, 1,200-4,096 characters, no first person, no references to other answers or the site; a row failing one is refused with the rule's reason), then the first ``n`` in the candidate file's own order, i.e. the order the ``curate`` stage sampled them in (temperature over sites for Stack Exchange, category first for wikiHow) | LIMA section 2 |
| ``longest`` | the ``n`` examples with the longest responses (characters of all assistant turns; ties: pool order) | "Long Is More for Alignment" (Zhao et al. 2024) |
| ``diverse`` | greedy farthest-point (k-center) on the unit-normalized prompt embeddings, from a seeded random start | the embedding-diversity filters of Deita and later work |
| ``ifd``, ``quality``, ``complexity``, ``deita`` | by a scorer model's or an LLM judge's numbers (:mod:`lima_align.curate.scored`) | Cherry / Superfiltering, AlpaGasus, Deita |
| ``unfiltered`` | ``n`` uniformly at random from candidates curated *without* the quality filters, and an audit counting how many drawn Stack Exchange rows the paper's answer rules would have refused | the paper's "unfiltered Stack Exchange" ablation |

What "the same source without the quality filters" means here: the quality filters live in the ``curate`` stage,
so ``unfiltered`` takes candidates produced with them switched off, e.g.::

    lima-align curate stackexchange DUMPS... --out se-unfiltered.jsonl --min-score 0 --min-chars 0 \\
        --max-chars 1000000000 --allow-first-person --allow-references --per-group 100000

(the question rules that make a prompt self-contained stay on: ``curate`` has no switch for them, and a prompt
that needs its thread is not a usable example either way). The mix cannot re-create rows a filter removed
upstream, so filtering happens where the rows are made, and the audit shows the arm really is unfiltered.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from lima_align.conversation import Example
from lima_align.curate.filters import answer_reason, score_reason

SE_SOURCE = "stackexchange"
# The paper's answer rules, as the curate stage applies them by default (sources/se_select.SelectionConfig).
LIMA_MIN_SCORE, LIMA_MIN_CHARS, LIMA_MAX_CHARS = 10, 1200, 4096


class Embedder(Protocol):
    """Turns texts into vectors (rows); see :func:`lima_align.curate.diversity.load_embedder`."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class Context:
    """What a strategy may use: a seeded RNG, for ``diverse`` and ``deita`` an embedder, for the scored
    strategies their scorers (:class:`lima_align.curate.scored.Scorers`)."""

    rng: random.Random
    embedder: Embedder | None = None
    scores: Any = None


@dataclass
class Selection:
    chosen: list[Example]
    refused: Counter = field(default_factory=Counter)  # candidates the strategy would not take, by reason
    audit: dict[str, Any] = field(default_factory=dict)  # strategy-specific facts for the report
    scores: list[dict[str, Any]] = field(default_factory=list)  # scored strategies: each chosen row's numbers

    @property
    def eligible(self) -> int:
        return len(self.chosen)


Strategy = Callable[[Sequence[Example], int, Context], Selection]


def lima_reason(ex: Example) -> str | None:
    """The paper's Stack Exchange answer rule a row breaks (None: passes, or not a Stack Exchange row)."""
    if ex.source != SE_SOURCE or ex.response is None:
        return None
    score = ex.meta.get("answer_score")
    reason = score_reason(int(score), LIMA_MIN_SCORE) if isinstance(score, (int, float)) else None
    return reason or answer_reason(ex.response, LIMA_MIN_CHARS, LIMA_MAX_CHARS)


def _in_pool_order(pool: Sequence[Example], picked: set[int]) -> list[Example]:
    return [ex for i, ex in enumerate(pool) if i in picked]


def select_random(pool: Sequence[Example], n: int, ctx: Context) -> Selection:
    """``n`` uniformly at random, returned in pool order."""
    picked = set(ctx.rng.sample(range(len(pool)), min(n, len(pool))))
    return Selection(_in_pool_order(pool, picked))


def select_lima(pool: Sequence[Example], n: int, ctx: Context) -> Selection:
    """Refuse Stack Exchange rows that break the paper's answer rules; take the first ``n`` of the rest."""
    refused: Counter = Counter()
    passing = []
    for ex in pool:
        reason = lima_reason(ex)
        if reason is None:
            passing.append(ex)
        else:
            refused[f"lima_filter:{reason}"] += 1
    return Selection(passing[:n], refused, {"passed_filters": len(passing)})


def response_chars(ex: Example) -> int:
    return sum(len(t) for t in ex.assistant_turns)


def select_longest(pool: Sequence[Example], n: int, ctx: Context) -> Selection:
    """The ``n`` longest responses (characters of the assistant turns); prompt-only rows are refused."""
    ranked = sorted((i for i, ex in enumerate(pool) if not ex.is_prompt_only),
                    key=lambda i: (-response_chars(pool[i]), i))
    refused = Counter({"no_response": len(pool) - len(ranked)}) if len(ranked) < len(pool) else Counter()
    picked = ranked[:n]
    chosen = _in_pool_order(pool, set(picked))
    shortest = min((response_chars(ex) for ex in chosen), default=0)
    return Selection(chosen, refused, {"shortest_chosen_chars": shortest})


def farthest_points(vectors: np.ndarray, k: int, start: int) -> list[int]:
    """Greedy k-center: start at ``start``, then repeatedly add the point farthest (cosine) from those chosen."""
    if k <= 0 or len(vectors) == 0:
        return []
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    chosen = [start]
    dist = 1.0 - unit @ unit[start]
    dist[start] = -np.inf
    while len(chosen) < min(k, len(unit)):
        nxt = int(np.argmax(dist))  # ties: the lowest index
        chosen.append(nxt)
        dist = np.minimum(dist, 1.0 - unit @ unit[nxt])
        dist[chosen] = -np.inf
    return chosen


def select_diverse(pool: Sequence[Example], n: int, ctx: Context) -> Selection:
    """Greedy farthest-point selection on prompt embeddings, from a seeded random first point."""
    if ctx.embedder is None:
        raise ValueError("the diverse strategy needs an embedder")
    if not pool:
        return Selection([])
    vectors = np.asarray(ctx.embedder.encode([ex.prompt for ex in pool]), dtype=np.float32)
    order = farthest_points(vectors, n, ctx.rng.randrange(len(pool)))
    unit = vectors[order] / np.maximum(np.linalg.norm(vectors[order], axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -1.0)
    closest = float(1.0 - sims.max()) if len(order) > 1 else 0.0
    return Selection(_in_pool_order(pool, set(order)), audit={"min_pairwise_cosine_distance": round(closest, 4)})


def select_unfiltered(pool: Sequence[Example], n: int, ctx: Context) -> Selection:
    """Uniform draw (as ``random``) and an audit of the paper's rules on the drawn Stack Exchange rows."""
    chosen = select_random(pool, n, ctx).chosen
    fails = Counter(r for r in (lima_reason(ex) for ex in chosen) if r is not None)
    se_rows = sum(1 for ex in chosen if ex.source == SE_SOURCE)
    return Selection(chosen, audit={"stackexchange_rows": se_rows, "would_fail_lima_filters": dict(fails)})


STRATEGIES: dict[str, Strategy] = {  # the unscored ones; every strategy a mix can name: scored.ALL_STRATEGIES
    "random": select_random,
    "lima": select_lima,
    "longest": select_longest,
    "diverse": select_diverse,
    "unfiltered": select_unfiltered,
}


def get_strategy(name: str, registry: dict[str, Strategy] | None = None) -> Strategy:
    registry = STRATEGIES if registry is None else registry
    if name not in registry:
        raise ValueError(f"unknown strategy {name!r} (known: {', '.join(registry)})")
    return registry[name]
