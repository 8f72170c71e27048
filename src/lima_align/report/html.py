"""The self-contained HTML page: figures embedded as data URIs, summary tables, and a per-prompt drill-down.

Everything a model or a judge wrote is untrusted: it is escaped, or rendered as Markdown with raw HTML
disabled (markdown-it escapes it, and refuses javascript: links). No script runs on the page.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from lima_align.evaluate.summary import group_label

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}details{border:1px solid #ddd;margin:.4em 0;padding:.3em .6em}
.answer{border-left:3px solid #4C78A8;padding-left:.8em;margin:.5em 0;overflow-x:auto}
pre{white-space:pre-wrap}.raw{color:#555;font-size:.9em}"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def markdown(text: str) -> str:
    """Markdown to HTML with raw HTML disabled (escaped); plain escaped text if markdown-it is absent."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        return f"<pre>{esc(text)}</pre>"
    return MarkdownIt("commonmark", {"html": False}).render(text or "")


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}"


def _ci(ci: list[float], pct: bool = True) -> str:
    if ci[0] != ci[0]:
        return "-"
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]" if pct else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _tables(summary: list[dict[str, Any]]) -> str:
    parts = []
    pw = [g for g in summary if g["protocol"] == "pairwise"]
    if pw:
        head = ("<tr><th>model vs baseline</th><th>n</th><th>missing</th><th>win %</th><th>95% CI</th><th>tie %</th>"
                "<th>loss %</th><th>95% CI</th><th>consistent %</th><th>first wins %</th><th>longer wins %</th></tr>")
        body = "".join(
            f"<tr><td>{esc(group_label(g))}</td><td>{g['outcomes']['n']}</td><td>{g['outcomes']['missing']}"
            f"</td><td>{_pct(g['outcomes']['win'])}</td><td>{_ci(g['outcomes']['win_ci'])}</td>"
            f"<td>{_pct(g['outcomes']['tie'])}</td><td>{_pct(g['outcomes']['loss'])}</td>"
            f"<td>{_ci(g['outcomes']['loss_ci'])}</td><td>{_pct(g['position']['consistency'])}</td>"
            f"<td>{_pct(g['position']['first_position_win_rate'])}</td>"
            f"<td>{_pct(g['length']['longer_wins_rate'])}</td></tr>" for g in pw)
        parts.append(f"<h2>Pairwise</h2><table>{head}{body}</table>")
    lk = [g for g in summary if g["protocol"] == "likert"]
    if lk:
        body = "".join(f"<tr><td>{esc(group_label(g))}</td><td>{g['likert']['n']}</td><td>{g['likert']['missing']}</td>"
                       f"<td>{g['likert']['mean']:.2f}</td><td>{_ci(g['likert']['ci'], pct=False)}</td></tr>"
                       for g in lk)
        parts.append("<h2>Likert helpfulness (1-6)</h2><table><tr><th>model</th><th>n</th><th>missing</th>"
                     f"<th>mean</th><th>95% CI</th></tr>{body}</table>")
    for g in summary:
        if g["protocol"] in ("absolute", "safety", "multiturn"):
            labels = g["labels"]
            keys = [k for k in labels["counts"]]
            cells = "".join(f"<td>{labels['counts'][k]} ({_pct(labels[k])}%)</td>" for k in keys)
            parts.append(f"<h2>{esc(g['protocol'].capitalize())}: {esc(group_label(g))}</h2><table><tr><th>n</th>"
                         f"<th>missing</th>{''.join(f'<th>{esc(k)}</th>' for k in keys)}</tr><tr>"
                         f"<td>{labels['n']}</td><td>{labels['missing']}</td>{cells}</tr></table>")
    return "".join(parts)


def _drilldown(rows: list[dict[str, Any]]) -> str:
    items = []
    for row in rows:
        answers = row.get("answers") or {}
        if "conversation" in row:
            answers = {f"turn {i + 1} ({'user' if i % 2 == 0 else 'assistant'})": t
                       for i, t in enumerate(row["conversation"])}
        blocks = "".join(f"<h4>{esc(name)}: {esc(row.get('models', {}).get(name, ''))}</h4>"
                         f"<div class='answer'>{markdown(text)}</div>" for name, text in answers.items())
        calls = "".join(f"<p class='raw'><b>{esc(c['tag'])}</b> label={esc(c['label'])}"
                        f"{' error=' + esc(c['error']) if c.get('error') else ''}</p><pre class='raw'>"
                        f"{esc(c.get('raw') or '')}</pre>" for c in row.get("calls", ()))
        items.append(f"<details><summary>{esc(row['protocol'])} · {esc(row['id'])} · verdict "
                     f"<b>{esc(json.dumps(row.get('verdict')))}</b></summary><h4>prompt</h4><pre>"
                     f"{esc(row.get('prompt', ''))}</pre>{blocks}<h4>judge</h4>{calls}</details>")
    return "".join(items)


def _agreement(agreement: dict[str, list[dict[str, Any]]]) -> str:
    parts = []
    for protocol, table in agreement.items():
        body = "".join(f"<tr><td>{esc(r['x'])}</td><td>{esc(r['y'])}</td><td>{r['n']}</td>"
                       f"<td>{_pct(r['agreement'])}</td><td>{_pct(r['exact'])}</td></tr>" for r in table)
        parts.append(f"<h2>Agreement ({esc(protocol)}, tie-discounted)</h2><table><tr><th>rater</th><th>rater</th>"
                     f"<th>shared items</th><th>agreement %</th><th>exact %</th></tr>{body}</table>")
    return "".join(parts)


def render_page(title: str, summary: list[dict[str, Any]], rows: list[dict[str, Any]], pngs: list[Path],
                agreement: dict[str, list[dict[str, Any]]] | None = None) -> str:
    figures = "".join(f"<figure><img alt='{esc(p.stem)}' src='data:image/png;base64,"
                      f"{base64.b64encode(p.read_bytes()).decode()}'></figure>" for p in pngs)
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='Content-Security-Policy' "
            f"content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\"><title>{esc(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>{figures}{_tables(summary)}"
            f"{_agreement(agreement or {})}"
            f"<h2>Per-prompt judgments ({len(rows)})</h2>{_drilldown(rows)}</body></html>")
