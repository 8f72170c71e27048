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

from lima_align.evaluate.format_metrics import COLUMNS as FORMAT_COLUMNS
from lima_align.evaluate.intervals import MIN_BOOTSTRAP_PROMPTS
from lima_align.evaluate.statistics import WIN_RATE
from lima_align.evaluate.summary import group_label
from lima_align.evaluate.tie_conventions import CONVENTIONS, LABELS

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}details{border:1px solid #ddd;margin:.4em 0;padding:.3em .6em}
.answer{border-left:3px solid #4C78A8;padding-left:.8em;margin:.5em 0;overflow-x:auto}
pre{white-space:pre-wrap}.raw{color:#555;font-size:.9em}img{max-width:100%;height:auto}
table{display:block;max-width:100%;overflow-x:auto}"""


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


def _rate(r: dict[str, Any], key: str) -> str:
    """``44.0 [38.4, 49.7]``: a rate with its CI, in percent."""
    return f"{_pct(r[key])} {_ci(r[f'{key}_ci'])}"


def _methods(r: dict[str, Any], keys: tuple[str, ...]) -> str:
    """The CI method(s) of a result's rates: one name, or ``key: method`` when they differ."""
    methods = {k: r.get(f"{k}_ci_method", "?") for k in keys}
    if len(set(methods.values())) == 1:
        return esc(next(iter(methods.values())))
    return esc("; ".join(f"{k}: {m}" for k, m in methods.items()))


_OUTCOME_KEYS = ("win", "tie", "loss", WIN_RATE)
_PAIRWISE_NOTE = (
    "<p>Each pair is judged in both orders. <b>per call</b>: every order's verdict counted separately; "
    "<b>combined, disagreement=tie</b> (the default, the row verdict): a pair wins only when both orders agree, "
    "any disagreement is a tie; <b>combined, average</b>: each order counts half. <b>win + tie/2</b> is the "
    "alpaca_eval-style win rate. Intervals: 95%, prompts as the unit (cluster bootstrap over prompts, or Wilson "
    f"at the effective n where the bootstrap is degenerate or there are under {MIN_BOOTSTRAP_PROMPTS} prompts). "
    "Compare a published figure such as the paper's 44/21/35 with the row of the same convention.</p>")


def _pairwise(pw: list[dict[str, Any]]) -> str:
    head = ("<tr><th>model vs baseline</th><th>convention</th><th>n</th><th>missing</th><th>win % [95% CI]</th>"
            "<th>tie % [95% CI]</th><th>loss % [95% CI]</th><th>win + tie/2 % [95% CI]</th><th>CI method</th></tr>")
    body = []
    for g in pw:
        for name in CONVENTIONS:
            r = g["conventions"][name]
            body.append(f"<tr><td>{esc(group_label(g))}</td><td>{esc(LABELS[name])}</td><td>{esc(r['design'])}</td>"
                        f"<td>{r['missing']}</td>{''.join(f'<td>{_rate(r, k)}</td>' for k in _OUTCOME_KEYS)}"
                        f"<td>{_methods(r, _OUTCOME_KEYS)}</td></tr>")
    judge = []
    for g in pw:
        first = g["conventions"]["per_call"]["first_position"]
        judge.append(f"<tr><td>{esc(group_label(g))}</td><td>{_pct(g['position']['consistency'])}</td>"
                     f"<td>{_pct(first['rate'])} {_ci(first['ci'])}</td><td>{first['decided_calls']}</td>"
                     f"<td>{_pct(g['length']['longer_wins_rate'])}</td></tr>")
    return (f"<h2>Pairwise</h2>{_PAIRWISE_NOTE}<table>{head}{''.join(body)}</table><h3>Judge behaviour</h3>"
            "<table><tr><th>model vs baseline</th><th>both orders agree %</th><th>first position wins % [95% CI]"
            f"</th><th>decided calls</th><th>longer wins %</th></tr>{''.join(judge)}</table>")


def _length_controlled(pw: list[dict[str, Any]]) -> str:
    """AlpacaEval-2-style length control: the judge's preference with the length difference set to zero."""
    body = []
    for g in pw:
        lc = g.get("length_controlled") or {}
        if lc.get("lc_win_rate") is None:
            continue
        body.append(f"<tr><td>{esc(group_label(g))}</td><td>{lc['n_prompts']} prompts, {lc['n']} rows</td>"
                    f"<td>{_pct(lc['raw_win_rate'])}</td><td>{_pct(lc['lc_win_rate'])} {_ci(lc['lc_ci'])}</td>"
                    f"<td>{lc['length_coef']:+.2f}</td><td>{esc(lc['prompt_term'])}</td></tr>")
    if not body:
        return ""
    return ("<h3>Length-controlled win rate</h3><p>A logistic model of the judge's preference for the model over "
            "the baseline with an intercept and a length-difference term (tanh of the scaled character "
            "difference); the LC win rate is its prediction at equal lengths, averaged over prompts (95% CI: "
            "bootstrap over prompts). A positive length coefficient: the judge prefers the longer answer.</p>"
            "<table><tr><th>model vs baseline</th><th>n</th><th>win + tie/2 %</th><th>LC win rate % [95% CI]</th>"
            f"<th>length coefficient</th><th>prompt term</th></tr>{''.join(body)}</table>")


def _cell(cell: dict[str, Any] | None) -> str:
    """``75.0 [30.1, 95.4]`` for a ``{rate, ci}`` result, ``-`` when the metric does not apply."""
    return "-" if cell is None else f"{_pct(cell['rate'])} {_ci(cell['ci'])}"


def _format_metrics(metrics: list[dict[str, Any]]) -> str:
    """The judge-free alignment metrics of each outputs file's models (no judge involved)."""
    if not metrics:
        return ""
    head = "".join(f"<th>{esc(name)} % [95% CI]</th>" for name, _ in FORMAT_COLUMNS)
    body = []
    for m in metrics:
        cells = "".join(f"<td>{_cell(m[key])}</td>" for _, key in FORMAT_COLUMNS)
        tokens = m["tokens"]
        length = "-" if tokens is None else f"{tokens['mean']:.0f} / {tokens['median']:.0f} / {tokens['p90']:.0f}"
        d2 = "-" if m["distinct_2"] is None else f"{m['distinct_2']:.3f}"
        body.append(f"<tr><td>{esc(m['model'])}</td><td>{m['prompts']} prompts, {m['answers']} answers</td>{cells}"
                    f"<td>{d2}</td><td>{length}</td></tr>")
    return ("<h2>Judge-free alignment metrics</h2><p>Format and style, measured on the answers themselves: "
            "<b>stop</b> ends with EOT before the token cap; <b>continues</b> continues the prompt instead of "
            "answering (starts mid-sentence or echoes it); lists, headings, code fences, several paragraphs; "
            "<b>repeats</b> the same 4-gram 3+ times; <b>refusals</b> on prompts tagged safety. 95% CIs: Wilson, "
            "or a cluster bootstrap over prompts with several samples each. A dash: not measurable (e.g. no "
            f"finish reason recorded).</p><table><tr><th>model</th><th>n</th>{head}<th>distinct-2</th>"
            f"<th>tokens mean / median / p90</th></tr>{''.join(body)}</table>")


def _likert(lk: list[dict[str, Any]]) -> str:
    body = "".join(f"<tr><td>{esc(group_label(g))}</td><td>{esc(g['likert']['design'])}</td>"
                   f"<td>{g['likert']['missing']}</td><td>{g['likert']['mean']:.2f}</td>"
                   f"<td>{_ci(g['likert']['ci'], pct=False)}</td></tr>" for g in lk)
    return ("<h2>Likert helpfulness (1-6)</h2><p>Mean of the per-prompt means; 95% CI: Student t over prompts "
            "(the samples of one prompt are not independent).</p><table><tr><th>model</th><th>graded</th>"
            f"<th>missing</th><th>mean</th><th>95% CI (t over prompts)</th></tr>{body}</table>")


def _labels(g: dict[str, Any]) -> str:
    labels = g["labels"]
    keys = tuple(labels["counts"])
    cells = "".join(f"<td>{labels['counts'][k]} ({_rate(labels, k)})</td>" for k in keys)
    return (f"<h2>{esc(g['protocol'].capitalize())}: {esc(group_label(g))}</h2><table><tr><th>n</th>"
            f"<th>missing</th>{''.join(f'<th>{esc(k)} % [95% CI]</th>' for k in keys)}<th>CI method</th></tr><tr>"
            f"<td>{esc(labels['design'])}</td><td>{labels['missing']}</td>{cells}<td>{_methods(labels, keys)}</td>"
            "</tr></table>")


def _tables(summary: list[dict[str, Any]]) -> str:
    parts = []
    pw = [g for g in summary if g["protocol"] == "pairwise"]
    if pw:
        parts += [_pairwise(pw), _length_controlled(pw)]
    lk = [g for g in summary if g["protocol"] == "likert"]
    if lk:
        parts.append(_likert(lk))
    parts += [_labels(g) for g in summary if g["protocol"] in ("absolute", "safety", "multiturn")]
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
        body = "".join(f"<tr><td>{esc(r['x'])}</td><td>{esc(r['y'])}</td><td>{esc(r.get('design', r['n']))}</td>"
                       f"<td>{_rate(r, 'agreement')}</td><td>{_rate(r, 'exact')}</td>"
                       f"<td>{_methods(r, ('agreement', 'exact'))}</td></tr>" for r in table)
        parts.append(f"<h2>Agreement ({esc(protocol)}, tie-discounted)</h2><table><tr><th>rater</th><th>rater</th>"
                     "<th>shared items</th><th>agreement % [95% CI]</th><th>exact % [95% CI]</th><th>CI method</th>"
                     f"</tr>{body}</table>")
    return "".join(parts)


def render_page(title: str, summary: list[dict[str, Any]], rows: list[dict[str, Any]], pngs: list[Path],
                agreement: dict[str, list[dict[str, Any]]] | None = None,
                format_metrics: list[dict[str, Any]] | None = None) -> str:
    figures = "".join(f"<figure><img alt='{esc(p.stem)}' src='data:image/png;base64,"
                      f"{base64.b64encode(p.read_bytes()).decode()}'></figure>" for p in pngs)
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='Content-Security-Policy' "
            f"content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\"><title>{esc(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>{figures}{_tables(summary)}"
            f"{_format_metrics(format_metrics or [])}"
            f"{_agreement(agreement or {})}"
            f"<h2>Per-prompt judgments ({len(rows)})</h2>{_drilldown(rows)}</body></html>")
