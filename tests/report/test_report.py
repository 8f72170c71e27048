"""The report renders: non-empty PNG/SVG figures, tables, and an HTML page that escapes model output."""

import json

from lima_align.report.build import build_report
from lima_align.report.html import markdown

EVIL = "<script>alert('pwned')</script> and [click](javascript:alert(1)) <img src=x onerror=alert(2)>"


def _pairwise_row(i, verdict, answer_a="**bold** answer", answer_b="plain"):
    label = {"a": "A", "b": "B", "tie": "tie"}[verdict]
    calls = [{"tag": "ab", "label": label, "verdict": verdict, "raw": f"Verdict: {label} <script>x</script>",
              "error": None},
             {"tag": "ba", "label": {"A": "B", "B": "A", "tie": "tie"}[label], "verdict": verdict,
              "raw": "...", "error": None}]
    return {"key": f"k{i}", "protocol": "pairwise", "id": f"q{i}", "prompt": "Why <b>?", "verdict": verdict,
            "consistent": True, "missing": False, "models": {"a": "lima", "b": "davinci"},
            "answers": {"a": answer_a, "b": answer_b}, "lengths": {"a": len(answer_a), "b": len(answer_b)},
            "calls": calls}


def test_report_figures_tables_and_escaped_html(tmp_path):
    rows = [_pairwise_row(0, "a", answer_a=EVIL), _pairwise_row(1, "a"), _pairwise_row(2, "tie"),
            _pairwise_row(3, "b")]
    rows += [{"key": f"l{i}", "protocol": "likert", "id": f"q{i}", "prompt": "p", "verdict": s, "missing": False,
              "models": {"a": "lima"}, "answers": {"a": "x"}, "lengths": {"a": 1}, "calls": []}
             for i, s in enumerate([4, 5, 6, None])]
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = build_report([path], tmp_path / "out", title="LIMA <vs> DaVinci")
    names = {p.name for p in written}
    assert {"pairwise.png", "pairwise.svg", "likert.png", "likert.svg", "index.html", "summary.json"} <= names
    assert (tmp_path / "out" / "pairwise.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "pairwise.png").stat().st_size > 2000
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<script" not in page.lower()  # neither the answer's nor the judge's raw text
    assert "&lt;script&gt;" in page  # shown as text
    assert 'href="javascript' not in page and "<img src=x" not in page
    assert "<strong>bold</strong>" in page  # markdown still renders
    assert "LIMA &lt;vs&gt; DaVinci" in page
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    pw = next(g for g in summary if g["protocol"] == "pairwise")
    assert pw["outcomes"]["counts"] == {"win": 2, "tie": 1, "loss": 1}
    lk = next(g for g in summary if g["protocol"] == "likert")
    assert lk["likert"]["mean"] == 5.0 and lk["likert"]["missing"] == 1


def test_markdown_keeps_no_raw_html():
    out = markdown(EVIL)
    assert "<script" not in out and "<img" not in out and 'href="javascript' not in out


def test_verdicts_of_different_raters_are_counted_apart(tmp_path):
    from lima_align.evaluate.summary import summarize

    gpt4 = [{**_pairwise_row(i, "a"), "judge": {"kind": "openai", "name": "gpt4"}} for i in range(3)]
    people = [{**_pairwise_row(i, v), "judge": {"kind": "human", "name": name}}
              for i, (v, name) in enumerate([("b", "ann1"), ("b", "ann2"), ("tie", "ann1")])]
    groups = {g["judge"]: g for g in summarize(gpt4 + people)}
    assert set(groups) == {"gpt4", "human"}  # the annotators are pooled, the LLM judge is not mixed in
    assert groups["gpt4"]["outcomes"]["counts"] == {"win": 3, "tie": 0, "loss": 0}
    assert groups["human"]["outcomes"]["counts"] == {"win": 0, "tie": 1, "loss": 2}
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in gpt4 + people))
    build_report([path], tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert "lima vs davinci (gpt4)" in page and "lima vs davinci (human)" in page
