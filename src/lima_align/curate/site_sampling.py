"""Temperature sampling over sites (LIMA: P(site) proportional to size^(1/tau), tau = 3), seeded.

Sampling is without replacement at the item level: each draw picks a site among those with items left (with
probability proportional to ``size ** (1 / tau)``), then takes that site's next item in its own order (for
Stack Exchange: the highest-scoring remaining question). A site whose items run out leaves the draw, and the
others' probabilities are renormalized. tau = 1 is proportional to size; tau -> infinity is uniform.
"""

from __future__ import annotations

import random
from typing import Mapping, Sequence, TypeVar

T = TypeVar("T")


def site_weights(sizes: Mapping[str, float], tau: float) -> dict[str, float]:
    """Normalized ``size ** (1/tau)`` per site (sites of size 0 get weight 0)."""
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    raw = {site: (size ** (1.0 / tau) if size > 0 else 0.0) for site, size in sizes.items()}
    total = sum(raw.values())
    return {site: (w / total if total else 0.0) for site, w in raw.items()}


def temperature_sample(pools: Mapping[str, Sequence[T]], sizes: Mapping[str, float], n: int, tau: float,
                       seed: int) -> list[tuple[str, T]]:
    """Draw up to ``n`` (site, item) pairs from the per-site ``pools`` (each in preference order).

    ``sizes`` gives each site's size for the weights (a site missing from ``sizes`` uses its pool length).
    Sites are visited in sorted order so that the result depends only on the inputs and the seed.
    """
    rng = random.Random(seed)
    sites = sorted(site for site, pool in pools.items() if pool)
    weights = site_weights({s: sizes.get(s, len(pools[s])) for s in sites}, tau)
    taken = {site: 0 for site in sites}
    out: list[tuple[str, T]] = []
    while len(out) < n:
        live = [s for s in sites if taken[s] < len(pools[s]) and weights[s] > 0]
        if not live:
            break
        site = rng.choices(live, weights=[weights[s] for s in live])[0]
        out.append((site, pools[site][taken[site]]))
        taken[site] += 1
    return out
