"""Temperature sampling over sites: P(site) proportional to size^(1/tau), seeded, without replacement."""

from __future__ import annotations

from collections import Counter

import pytest

from lima_align.curate.site_sampling import site_weights, temperature_sample


def test_weights_follow_size_power():
    w = site_weights({"big": 1000, "small": 1, "empty": 0}, tau=3)
    assert w["big"] / w["small"] == pytest.approx(10.0)  # 1000 ** (1/3)
    assert w["empty"] == 0 and sum(w.values()) == pytest.approx(1.0)
    assert site_weights({"a": 8, "b": 1}, tau=1)["a"] == pytest.approx(8 / 9)
    with pytest.raises(ValueError):
        site_weights({"a": 1}, tau=0)


def test_sampling_is_seeded_and_matches_the_weights():
    pools = {"big": list(range(10_000)), "small": list(range(10_000))}
    sizes = {"big": 1000, "small": 1}
    a = temperature_sample(pools, sizes, 2000, tau=3, seed=7)
    assert a == temperature_sample(pools, sizes, 2000, tau=3, seed=7)
    assert a != temperature_sample(pools, sizes, 2000, tau=3, seed=8)
    counts = Counter(site for site, _ in a)
    assert counts["big"] / 2000 == pytest.approx(10 / 11, abs=0.03)
    uniform = Counter(s for s, _ in temperature_sample(pools, sizes, 2000, tau=1e9, seed=7))
    assert uniform["big"] / 2000 == pytest.approx(0.5, abs=0.05)


def test_items_taken_in_pool_order_without_replacement_and_exhaustion():
    pools = {"a": ["a1", "a2"], "b": ["b1", "b2", "b3"], "c": []}
    out = temperature_sample(pools, {"a": 100, "b": 1, "c": 5}, 10, tau=3, seed=0)
    assert len(out) == 5 and sorted(item for _, item in out) == ["a1", "a2", "b1", "b2", "b3"]
    assert [i for s, i in out if s == "a"] == ["a1", "a2"] and [i for s, i in out if s == "b"] == ["b1", "b2", "b3"]
    assert temperature_sample({}, {}, 5, tau=3, seed=0) == []
