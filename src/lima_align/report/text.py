"""The report's headline numbers as plain text lines (what ``lima-align report`` prints). Pure."""

from __future__ import annotations

from typing import Any

from lima_align.evaluate.summary import group_label


def _rate(r: dict[str, Any], key: str) -> str:
    lo, hi = r[f"{key}_ci"]
    return f"{r[key]:.2f} [{lo:.2f}, {hi:.2f}]"


def summary_lines(summary: list[dict[str, Any]]) -> list[str]:
    """One line per group: pairwise rates under the default tie convention and the length-controlled win rate;
    the Likert mean; label rates. Every number with its 95% interval and its n (prompts x samples)."""
    lines = []
    for g in summary:
        label = group_label(g)
        if g["protocol"] == "pairwise":
            o = g["outcomes"]
            line = (f"{label}: win {_rate(o, 'win')}, tie {_rate(o, 'tie')}, loss {_rate(o, 'loss')} "
                    f"({o.get('policy', '')}; {o['design']}, {o['missing']} missing)")
            lc = g.get("length_controlled") or {}
            if lc.get("lc_win_rate") is not None:
                lo, hi = lc["lc_ci"]
                line += (f"; length-controlled win rate {lc['lc_win_rate']:.2f} [{lo:.2f}, {hi:.2f}] "
                         f"(length coefficient {lc['length_coef']:+.2f})")
            lines.append(line)
        elif g["protocol"] == "likert":
            lk = g["likert"]
            lines.append(f"{label}: Likert mean {lk['mean']:.2f} [{lk['ci'][0]:.2f}, {lk['ci'][1]:.2f}] "
                         f"({lk['design']}, {lk['missing']} missing)")
        else:
            labels = g["labels"]
            rates = ", ".join(f"{k} {_rate(labels, k)}" for k in labels["counts"])
            lines.append(f"{label} [{g['protocol']}]: {rates} ({labels['design']})")
    return lines
