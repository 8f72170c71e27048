"""``lima-align report``: summaries, figures and the HTML page from judgments files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lima_align.evaluate.agreement import agreement_from_rows
from lima_align.evaluate.format_metrics import metrics_for_files
from lima_align.evaluate.summary import RATINGS, SAFETY, group_label, summarize
from lima_align.evaluate.tie_conventions import DEFAULT_POLICY
from lima_align.fileio import iter_jsonl, write_json
from lima_align.report.figures import likert_bars, stacked_bars
from lima_align.report.html import render_page


def load_rows(paths: list[str | Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        rows.extend(row for _line, row in iter_jsonl(path))
    return rows


def make_figures(summary: list[dict[str, Any]], out: Path) -> list[Path]:
    written: list[Path] = []
    pairwise = [{"label": group_label(g), **{k: g["outcomes"][k] for k in ("win", "tie", "loss")}}
                for g in summary if g["protocol"] == "pairwise"]
    if pairwise:
        written += stacked_bars(pairwise, ("win", "tie", "loss"), out / "pairwise",
                                f"Pairwise preference (combined rows, {DEFAULT_POLICY})")
    likert = [{"label": group_label(g), **g["likert"]} for g in summary if g["protocol"] == "likert"]
    if likert:
        written += likert_bars(likert, out / "likert", "Helpfulness (mean, 95% CI over prompts)")
    for protocol, keys in (("absolute", RATINGS), ("multiturn", RATINGS), ("safety", SAFETY)):
        groups = [{"label": group_label(g), **{k: g["labels"][k] for k in keys}} for g in summary
                  if g["protocol"] == protocol]
        if groups:
            written += stacked_bars(groups, keys, out / protocol, protocol.capitalize())
    return written


def build_report(paths: list[str | Path], out: str | Path, *, title: str = "lima-align evaluation",
                 outputs: list[str | Path] = ()) -> list[Path]:
    """Write summary.json, the figures (PNG + SVG) and index.html into ``out``; returns the paths written.
    ``outputs``: generation outputs files whose judge-free alignment metrics (format-metrics.json) the page shows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(paths)
    summary = summarize(rows)
    write_json(out / "summary.json", json.loads(json.dumps(summary, default=str)))
    # raters (human annotators, LLM judges) who labelled the same items: the paper's tie-discounted agreement
    agreement = {p: t for p in ("pairwise", "absolute") if (t := agreement_from_rows(rows, p))}
    if agreement:
        write_json(out / "agreement.json", json.loads(json.dumps(agreement).replace("NaN", "null")))
    metrics = metrics_for_files(outputs) if outputs else []
    if metrics:
        write_json(out / "format-metrics.json", metrics)
    figures = make_figures(summary, out)
    page = out / "index.html"
    page.write_text(render_page(title, summary, rows, [f for f in figures if f.suffix == ".png"],
                                 agreement, metrics),
                    encoding="utf-8")
    return [out / "summary.json", *([out / "format-metrics.json"] if metrics else []), *figures, page]
