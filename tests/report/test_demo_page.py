"""The demo's one-page report in a real browser at 1280 px: no horizontal overflow, answers side by side."""

from __future__ import annotations

from lima_align.report.demo_page import render_demo_page
from lima_align.report.figures import paired_rates

LONG_WORD = "x" * 400  # an unbreakable run of characters (a URL, a hash): must wrap, not widen the page
CODE = "```python\n" + "print('a very long line of code that goes on and on and on and on and on and on and on')\n" * 3 + "```"


def _cell(rate, lo, hi):
    return {"rate": rate, "ci": [lo, hi], "k": 0, "n": 8}


def _data():
    style = {"eot_rate": _cell(0.0, 0.0, 0.32), "stop_rate": _cell(0.125, 0.02, 0.47), "continuation_rate": _cell(0.5, 0.2, 0.8),
             "list_rate": _cell(0.0, 0.0, 0.32), "repetition_rate": _cell(0.25, 0.07, 0.59),
             "tokens": {"mean": 96.0, "median": 96.0, "p90": 96.0, "n": 8}}
    after = {**style, "eot_rate": _cell(0.75, 0.41, 0.93), "stop_rate": _cell(0.875, 0.53, 0.98), "list_rate": _cell(0.5, 0.2, 0.8)}
    prompts = [{"id": f"p{i}", "prompt": f"Question {i} <b>bold?</b>", "before": LONG_WORD + " and more " * 40,
                "after": f"1. First\n2. Second\n\n{CODE}", "before_finish": "hit the token cap",
                "after_finish": "stopped at EOT", "after_preferred": 0.6} for i in range(3)]
    return {"title": "demo", "label": "DEMO", "model": "gemma-3-270m",
            "deltas": [("base model", "gemma-3-270m", "LLaMA 65B"), ("epochs", "3", "15")],
            "why": ["examples that fit the trim <whole>"],
            "table1": [{"source": "stackexchange", "examples": 6, "input_tokens": 20.5, "output_tokens": 150.0}],
            "style": {"before": style, "after": after},
            "reference_loss": {"before": {"mean_loss": 3.2, "references": 10}, "after": {"mean_loss": 2.9,
                                                                                       "references": 10},
                               "difference": {"diff": -0.3, "ci": [-0.5, -0.1]}},
            "judge": {"model": "smollm2", "after_preferred": _cell(0.56, 0.48, 0.64), "caveat": "A small judge."},
            "prompts": prompts}


def test_demo_page_fits_1280_px_with_the_answers_side_by_side(browser, tmp_path):
    data = _data()
    b, a = data["style"]["before"], data["style"]["after"]
    png, _ = paired_rates([(k, b[k], a[k]) for k in ("stop_rate", "list_rate")], ("before", "after"),
                          tmp_path / "fig", "held-out answers")
    page_file = tmp_path / "index.html"
    page_file.write_text(render_demo_page(data, png), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(page_file.as_uri())
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= 1280, f"the page overflows horizontally: {scroll_width} px"
        boxes = page.eval_on_selector_all(".pair", "els => els.map(e => [...e.children].map(c => "
                                                   "{const r = c.getBoundingClientRect(); return [r.left, r.right, r.top, r.width]}))")
        assert len(boxes) == 3
        for (before, after) in boxes:  # two columns on one row, both wide enough to read
            assert before[1] <= after[0] and abs(before[2] - after[2]) < 1 and min(before[3], after[3]) > 400
        img = page.eval_on_selector("img", "e => [e.naturalWidth > 0, e.getBoundingClientRect().right]")
        assert img[0] and img[1] <= 1280
        assert page.inner_text(".prompt") == "Question 0 <b>bold?</b>"  # the prompt is shown as text, escaped
        assert "examples that fit the trim <whole>" in page.inner_text("ul")  # the reasons, escaped
        headline = page.inner_text(".measure .headline")  # EOT itself, not EOS: 0% -> 75%, not 12% -> 88%
        assert "EOT stop rate 0% [0, 32] before, 75% [41, 93] after" in headline, headline
        shot = tmp_path / "demo.png"  # look at it: pytest --basetemp=DIR keeps it
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        page.close()
