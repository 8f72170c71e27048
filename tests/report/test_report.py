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


def _calls_row(i, ab, ba, verdict, sample=0):
    """A pairwise row as the protocol writes it: position labels per order, mapped back to the models."""
    to_model = {"ab": {"A": "a", "B": "b", "tie": "tie"}, "ba": {"A": "b", "B": "a", "tie": "tie"}}
    row = _pairwise_row(i, verdict)
    row["sample"] = sample
    row["calls"] = [{"tag": t, "label": x, "verdict": to_model[t][x], "raw": "", "error": None}
                    for t, x in (("ab", ab), ("ba", ba))]
    return row


def test_five_of_five_wins_give_an_honest_interval(tmp_path):
    # the demo's old output was "win 95% CI [1.0, 1.0]"; Wilson over 5 prompts: [5 / 8.841459, 1] = [0.5655, 1]
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(_calls_row(i, "A", "B", "a")) + "\n" for i in range(5)))
    build_report([path], tmp_path / "out")
    pw = json.loads((tmp_path / "out" / "summary.json").read_text())[0]
    lo, hi = pw["outcomes"]["win_ci"]
    assert lo < 0.6 and abs(lo - 0.565518) < 1e-6 and hi == 1.0
    assert pw["outcomes"]["win_ci_method"] == "wilson" and pw["outcomes"]["design"] == "5 prompts x 1 sample"
    assert pw["outcomes"]["loss_ci"][1] > 0.4  # 0 losses of 5 is not "certainly never loses"


def test_report_command_prints_the_five_of_five_interval(tmp_path, capsys):
    from lima_align.cli import main

    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(_calls_row(i, "A", "B", "a")) + "\n" for i in range(5)))
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("lima vs davinci") and "win 1.00 [0.57, 1.00]" in first
    assert "disagreement=tie; 5 prompts x 1 sample, 0 missing" in first and "length-controlled win rate" in first


def test_summary_and_page_label_every_tie_convention(tmp_path):
    # q0: a both orders; q1: a then tie; q2: a then b; q3: b both orders
    rows = [_calls_row(0, "A", "B", "a"), _calls_row(1, "A", "tie", "tie"), _calls_row(2, "A", "A", "tie"),
            _calls_row(3, "B", "A", "b")]
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_report([path], tmp_path / "out")
    pw = json.loads((tmp_path / "out" / "summary.json").read_text())[0]
    conv = pw["conventions"]
    assert set(conv) == {"per_call", "disagreement=tie", "average"}
    assert pw["outcomes"]["policy"] == "disagreement=tie" and pw["outcomes"] == conv["disagreement=tie"]
    # disagreement=tie: a, tie, tie, b -> 25 / 50 / 25, win + tie/2 = 50
    # average: (1,0,0) (.5,.5,0) (.5,0,.5) (0,0,1) -> 50 / 12.5 / 37.5, win + tie/2 = 56.25
    # per call: a a | a tie | a b | b b -> 4 / 1 / 3 of 8 = 50 / 12.5 / 37.5
    assert [conv["disagreement=tie"][k] for k in ("win", "tie", "loss", "win_plus_half_tie")] == [.25, .5, .25, .5]
    assert [conv["average"][k] for k in ("win", "tie", "loss", "win_plus_half_tie")] == [.5, .125, .375, .5625]
    assert [conv["per_call"][k] for k in ("win", "tie", "loss")] == [.5, .125, .375]
    page = (tmp_path / "out" / "index.html").read_text()
    for label, win in (("per call (each order counted separately)", "50.0 ["),
                       ("combined, disagreement=tie (default: both orders must agree)", "25.0 ["),
                       ("combined, average (each order counts half)", "50.0 [")):
        row = page.split(f"<td>{label}</td>", 1)[1].split("</tr>", 1)[0]
        assert row.split("<td>")[3].startswith(win), (label, row)  # design, missing, then win %
    assert "56.2 [" in page.split("combined, average (each order counts half)</td>", 1)[1].split("</tr>")[0]
    assert "alpaca_eval-style win rate" in page and "44/21/35" in page


def test_likert_and_label_tables_state_prompts_x_samples(tmp_path):
    rows = [{"key": f"l{i}{s}", "protocol": "likert", "id": f"q{i}", "sample": s, "prompt": "p", "verdict": v,
             "models": {"a": "lima"}, "answers": {"a": "x"}, "lengths": {"a": 1}, "calls": []}
            for i, pair in enumerate([(2, 4), (5, 5), (4, 6), (1, 3)]) for s, v in enumerate(pair)]
    rows += [{"key": f"a{i}", "protocol": "absolute", "id": f"q{i // 2}", "sample": i % 2, "prompt": "p",
              "verdict": v, "models": {"a": "lima"}, "answers": {"a": "x"}, "lengths": {"a": 1}, "calls": []}
             for i, v in enumerate(["excellent", "excellent", "fail", "pass"])]
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_report([path], tmp_path / "out")
    summary = {g["protocol"]: g for g in json.loads((tmp_path / "out" / "summary.json").read_text())}
    lk = summary["likert"]["likert"]
    # prompt means 3, 5, 5, 2 -> 3.75 +- t(0.975, 3) * 1.5 / 2 = 3.75 +- 2.386835
    assert abs(lk["ci"][0] - 1.363165) < 1e-5 and lk["n_prompts"] == 4 and lk["n_samples"] == 8
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<td>4 prompts x 2 samples</td>" in page and "[1.36, 6.14]" in page
    assert "<td>2 prompts x 2 samples</td>" in page  # the absolute ratings, clustered the same way
    assert summary["absolute"]["labels"]["excellent_ci_method"] == "wilson"


def test_report_shows_the_length_controlled_rate_and_the_judge_free_metrics(tmp_path):
    # the judge picks the longer answer; model a is longer on 30 of 40 prompts: a length preference, not quality
    rows = []
    for i in range(40):
        long_a = i % 4 != 0
        a, b = ("word " * 60, "word " * 10) if long_a else ("word " * 10, "word " * 60)
        rows.append(_pairwise_row(i, "a" if long_a else "b", answer_a=a, answer_b=b))
    judged = tmp_path / "j.jsonl"
    judged.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outputs = tmp_path / "lima.jsonl"  # 3 answers end at EOT, 1 hits the cap; one is a numbered list
    answers = [("1. Preheat.\n2. Bake.", "eot"), ("Sure. It is blue.", "eot"), ("Paris.", "eot"),
               ("and then it", "length")]
    outputs.write_text("".join(json.dumps({"id": f"q{i}", "sample": 0, "conversations": [f"Question {i}?", text],
                                           "output": text, "finish_reason": reason, "completion_tokens": 5,
                                           "generator": "lima"}) + "\n"
                               for i, (text, reason) in enumerate(answers)))
    from lima_align.cli import main

    assert main(["report", str(judged), "--out", str(tmp_path / "out"), "--outputs", str(outputs)]) == 0
    (group,) = json.loads((tmp_path / "out" / "summary.json").read_text())
    lc = group["length_controlled"]
    assert group["conventions"]["average"]["win_plus_half_tie"] == 0.75 and lc["raw_win_rate"] == 0.75
    assert lc["length_coef"] > 0 and abs(lc["lc_win_rate"] - 0.5) < abs(lc["raw_win_rate"] - 0.5)
    (metrics,) = json.loads((tmp_path / "out" / "format-metrics.json").read_text())
    assert metrics["model"] == "lima" and metrics["stop_rate"]["rate"] == 0.75
    assert metrics["numbered_rate"]["rate"] == 0.25 and metrics["continuation_rate"]["rate"] == 0.25
    page = (tmp_path / "out" / "index.html").read_text()
    assert "Length-controlled win rate" in page and "Judge-free alignment metrics" in page
    assert "75.0 [30.1, 95.4]" in page  # the stop rate 3/4 with its Wilson interval (hand: test_format_metrics)
