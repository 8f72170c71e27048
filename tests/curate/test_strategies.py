"""Selection strategies on small hand-built pools: each strategy's defining property (real pools: test_mix)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lima_align.conversation import Example
from lima_align.curate.strategies import (Context, farthest_points, get_strategy, select_diverse, select_lima,
                                      select_longest, select_random, select_unfiltered)


def _ex(i: int, response: str, source: str = "wikihow", **meta) -> Example:
    return Example(f"e{i}", [f"prompt {i}", response], source, meta)


POOL = [_ex(i, "word " * ((i * 37) % 50 + 1)) for i in range(40)]


def test_longest_takes_the_k_longest_responses() -> None:
    sel = select_longest(POOL, 10, Context(random.Random(0)))
    lengths = sorted((len(ex.response) for ex in POOL), reverse=True)
    assert sorted((len(ex.response) for ex in sel.chosen), reverse=True) == lengths[:10]
    assert [ex.id for ex in sel.chosen] == [ex.id for ex in POOL if ex in sel.chosen]  # pool order


def test_random_is_seeded_and_without_replacement() -> None:
    a = select_random(POOL, 15, Context(random.Random("s")))
    b = select_random(POOL, 15, Context(random.Random("s")))
    assert [e.id for e in a.chosen] == [e.id for e in b.chosen] and len({e.id for e in a.chosen}) == 15
    assert len(select_random(POOL, 100, Context(random.Random(0))).chosen) == 40  # a shortfall, not a refill


def test_lima_refuses_stack_exchange_rows_breaking_the_papers_rules() -> None:
    good = "Roasting changes the bean. " * 60  # ~1,600 characters, no first person
    pool = [_ex(0, good, "stackexchange", answer_score=25), _ex(1, good, "stackexchange", answer_score=3),
            _ex(2, "Too short.", "stackexchange", answer_score=40), _ex(3, good + " I think so.", "stackexchange",
                                                                        answer_score=40),
            _ex(4, "Short is fine outside Stack Exchange.")]
    sel = select_lima(pool, 10, Context(random.Random(0)))
    assert [e.id for e in sel.chosen] == ["e0", "e4"]
    assert dict(sel.refused) == {"lima_filter:no_answer_min_score": 1, "lima_filter:answer_too_short": 1,
                                 "lima_filter:answer_first_person": 1}
    audit = select_unfiltered(pool, 5, Context(random.Random(0))).audit
    assert audit["stackexchange_rows"] == 4 and sum(audit["would_fail_lima_filters"].values()) == 3


class _Clusters:
    """Five tight clusters of prompts: prompt i lies in cluster i % 5."""

    def encode(self, texts: list[str]) -> np.ndarray:
        rng = np.random.default_rng(0)
        centers = np.eye(8)[:5]
        return np.stack([centers[int(t.split()[1]) % 5] + 0.01 * rng.standard_normal(8) for t in texts])


def test_diverse_covers_every_cluster_before_repeating_one() -> None:
    sel = select_diverse(POOL, 5, Context(random.Random(3), _Clusters()))
    assert sorted(int(ex.prompt.split()[1]) % 5 for ex in sel.chosen) == [0, 1, 2, 3, 4]
    assert sel.audit["min_pairwise_cosine_distance"] > 0.9
    rand = select_random(POOL, 5, Context(random.Random(3))).chosen
    assert len({int(ex.prompt.split()[1]) % 5 for ex in rand}) <= 5
    with pytest.raises(ValueError, match="embedder"):
        select_diverse(POOL, 5, Context(random.Random(0)))


def test_farthest_points_is_greedy_k_center() -> None:
    points = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0], [-0.99, -0.1]])
    assert farthest_points(points, 3, 0) == [0, 3, 2]
    assert farthest_points(points, 10, 0)[:3] == [0, 3, 2] and len(farthest_points(points, 10, 0)) == 5


def test_unknown_strategy_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        get_strategy("best")
