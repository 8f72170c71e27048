"""Figures (PNG and SVG) with matplotlib's Agg backend, imported lazily (the ``report`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lima_align.errors import LimaError

COLORS = {"win": "#4C78A8", "tie": "#BAB0AC", "loss": "#E45756",
          "fail": "#E45756", "pass": "#BAB0AC", "excellent": "#4C78A8", "safe": "#4C78A8", "unsafe": "#E45756"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise LimaError("reports need matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Date": None} if path.suffix == ".svg" else None)
    _pyplot().close(fig)
    return paths


def stacked_bars(rows: list[dict[str, Any]], keys: tuple[str, ...], stem: Path, title: str) -> list[Path]:
    """Horizontal 100% stacked bars, one per row (``label`` and a rate per key), as in the paper's Figure 1."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.2))
    labels = [r["label"] for r in rows]
    left = [0.0] * len(rows)
    for key in keys:
        widths = [100 * (r[key] if r[key] == r[key] else 0) for r in rows]  # NaN (nothing judged) -> 0
        bars = ax.barh(labels, widths, left=left, color=COLORS.get(key), label=key.capitalize())
        for bar, w in zip(bars, widths):
            if w >= 6:
                ax.text(bar.get_x() + w / 2, bar.get_y() + bar.get_height() / 2, f"{w:.0f}%", ha="center",
                        va="center", fontsize=8, color="white")
        left = [a + w for a, w in zip(left, widths)]
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("%")
    ax.set_title(title)
    ax.legend(ncol=len(keys), loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    return _save(fig, stem)


def likert_bars(rows: list[dict[str, Any]], stem: Path, title: str) -> list[Path]:
    """Mean 1-6 score per model with its two-sided 95% CI as error bars."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows) + 2), 3.5))
    means = [r["mean"] for r in rows]
    errs = [[max(0.0, m - r["ci"][0]) if r["ci"][0] == r["ci"][0] else 0 for m, r in zip(means, rows)],
            [max(0.0, r["ci"][1] - m) if r["ci"][1] == r["ci"][1] else 0 for m, r in zip(means, rows)]]
    ax.bar([r["label"] for r in rows], means, yerr=errs, capsize=6, color="#4C78A8")
    ax.set_ylim(1, 6)
    ax.set_ylabel("helpfulness (1-6)")
    ax.set_title(title)
    return _save(fig, stem)


def paired_rates(metrics: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]], names: tuple[str, str],
                 stem: Path, title: str) -> list[Path]:
    """Grouped bars: each metric's rate for two models (e.g. before / after tuning) with their 95% CIs."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.38
    for side, (name, color) in enumerate(zip(names, ("#BAB0AC", "#4C78A8"))):
        cells = [m[1 + side] for m in metrics]
        rates = [100 * c["rate"] if c else 0.0 for c in cells]
        errs = [[max(0.0, r - 100 * c["ci"][0]) if c else 0 for r, c in zip(rates, cells)],
                [max(0.0, 100 * c["ci"][1] - r) if c else 0 for r, c in zip(rates, cells)]]
        ax.bar([i + (side - 0.5) * width for i in range(len(metrics))], rates, width, yerr=errs, capsize=4,
               color=color, label=name)
    ax.set_xticks(range(len(metrics)), [m[0] for m in metrics])
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of answers (95% CI)")
    ax.set_title(title)
    ax.legend(frameon=False)
    return _save(fig, stem)
