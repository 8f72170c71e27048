"""The demo's one-page report: what was run, three measurements of before vs after tuning (each with its CI and
what it does and does not show), one figure, and every held-out prompt with both answers side by side.

Pure rendering from ``demo-summary.json``-shaped data; model output is escaped or rendered as Markdown without raw
HTML (:func:`lima_align.report.html.markdown`), and the page runs no script.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from lima_align.report.html import esc, markdown

_CSS = """body{font-family:system-ui,sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;color:#222;
line-height:1.4}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}table{border-collapse:collapse;margin:.6em 0;
max-width:100%;display:block;overflow-x:auto}td,th{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%;height:auto}.measure{border-left:4px solid #4C78A8;
padding:.2em .9em;margin:.8em 0}.measure p{margin:.3em 0}.headline{font-size:1.15em;font-weight:600}
.pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1em}.answer{min-width:0;
overflow-wrap:anywhere;border:1px solid #ddd;padding:.3em .7em;background:#fafafa}.answer pre{white-space:pre-wrap}
.prompt{margin:1.2em 0 .3em;font-weight:600}.verdict{color:#555;font-size:.92em;margin:.2em 0 1em}
.scaled{background:#fff6e0;border:1px solid #e8c66d;padding:.4em .8em}"""


def _pct(cell: dict[str, Any] | None) -> str:
    if not cell or cell.get("rate") is None:
        return "-"
    lo, hi = cell["ci"]
    return f"{100 * cell['rate']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or x != x else f"{x:.{digits}f}"


def _run_section(d: dict[str, Any]) -> str:
    deltas = "".join(f"<tr><td>{esc(what)}</td><td>{esc(demo)}</td><td>{esc(paper)}</td></tr>"
                     for what, demo, paper in d["deltas"])
    mix = "".join(f"<tr><td>{esc(r['source'])}</td><td>{r['examples']}</td><td>{_num(r['input_tokens'], 1)}</td>"
                  f"<td>{_num(r['output_tokens'], 1)}</td></tr>" for r in d["table1"])
    return (f"<h2>What was run</h2><p class='scaled'>{esc(d['label'])}: <b>{esc(d['model'])}</b> fine-tuned with the "
            "LIMA recipe's shape, scaled down to a few minutes on a CPU. The numbers below show what a few "
            "examples teach a base model (format, stopping), not the paper's results.</p>"
            "<table><tr><th>training mix (Table 1)</th><th>examples</th><th>avg input tokens</th>"
            f"<th>avg output tokens</th></tr>{mix}</table><table><tr><th>setting</th><th>this demo</th>"
            f"<th>the paper</th></tr>{deltas}</table>" + (
                "<p>Why these settings:</p><ul>" + "".join(f"<li>{esc(w)}</li>" for w in d["why"]) + "</ul>"
                if d.get("why") else ""))


def _style(d: dict[str, Any]) -> str:
    b, a = d["style"]["before"], d["style"]["after"]
    rows = [("ends with EOT before the cap (EOT stop rate)", "eot_rate"),
            ("ends with EOT or the pretrained EOS", "stop_rate"),
            ("continues the prompt instead of answering", "continuation_rate"),
            ("uses a list", "list_rate"), ("repeats a 4-gram 3+ times", "repetition_rate")]
    body = "".join(f"<tr><td>{esc(name)}</td><td>{_pct(b.get(key))}</td><td>{_pct(a.get(key))}</td></tr>"
                   for name, key in rows)
    tokens = f"<tr><td>answer length, mean tokens</td><td>{_num((b.get('tokens') or {}).get('mean'), 0)}</td>" \
             f"<td>{_num((a.get('tokens') or {}).get('mean'), 0)}</td></tr>"
    return ("<div class='measure'><p class='headline'>1. Style, no judge: EOT stop rate "
            f"{_pct(b.get('eot_rate'))} before, {_pct(a.get('eot_rate'))} after</p>"
            "<p>Shows whether tuning taught the assistant format: ending the answer with EOT instead of rambling to "
            "the token cap, answering instead of continuing the prompt. Does not show whether the answers are "
            "right or helpful. 95% CIs: Wilson over the held-out prompts.</p>"
            f"<table><tr><th>share of answers</th><th>before</th><th>after</th></tr>{body}{tokens}</table></div>")


def _reference(d: dict[str, Any]) -> str:
    r = d["reference_loss"]
    diff = r["difference"]
    return ("<div class='measure'><p class='headline'>2. Reference loss: "
            f"{_num(r['before']['mean_loss'])} before, {_num(r['after']['mean_loss'])} after "
            f"(change {_num(diff['diff'])} [{_num(diff['ci'][0])}, {_num(diff['ci'][1])}])</p>"
            f"<p>Mean per-token loss (nats) of {r['after']['references']} held-out GPT-4 reference answers "
            "(Vicuna-80 coding and math questions), their EOT included: lower means the model finds answers "
            "written in an assistant's style, ending where they end, more likely. Does not show that the model "
            "could write them. Interval: paired t over the references.</p></div>")


def _judge(d: dict[str, Any]) -> str:
    j = d["judge"]
    return ("<div class='measure'><p class='headline'>3. Built-in judge: after preferred over before "
            f"{_pct(j['after_preferred'])}</p><p>The weighted judge ({esc(j['model'])}) reads the probabilities of "
            "its verdict tokens in both orders and averages them: no missing verdict and no position preference "
            f"by construction. {esc(j['caveat'])} 50% means no preference. Interval: over the held-out "
            "prompts.</p></div>")


def _prompts(d: dict[str, Any]) -> str:
    items = []
    for p in d["prompts"]:
        pref = p.get("after_preferred")
        verdict = "-" if pref is None else f"judge: after preferred with probability {100 * pref:.0f}%"
        items.append(f"<div class='prompt'>{esc(p['prompt'])}</div><div class='pair'>"
                     f"<div class='answer'><b>before</b> ({esc(p['before_finish'])})"
                     f"{markdown(p['before'])}</div><div class='answer'><b>after</b> ({esc(p['after_finish'])})"
                     f"{markdown(p['after'])}</div></div><div class='verdict'>{esc(verdict)}</div>")
    return f"<h2>The held-out prompts, before and after</h2>{''.join(items)}"


def render_demo_page(data: dict[str, Any], figure: Path | None = None) -> str:
    """The whole page; ``figure``: a PNG embedded as a data URI."""
    img = (f"<img alt='before vs after' src='data:image/png;base64,{base64.b64encode(figure.read_bytes()).decode()}'>"
           if figure else "")
    return ("<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
            f"style-src 'unsafe-inline'\"><title>{esc(data['title'])}</title><style>{_CSS}</style></head><body>"
            f"<h1>{esc(data['title'])}</h1>{_run_section(data)}<h2>Before vs after tuning, three ways</h2>"
            f"{_style(data)}{_reference(data)}{_judge(data)}{img}{_prompts(data)}</body></html>")
