"""A shortened `lima-align demo`: every stage for real, on the shipped excerpts, with a smaller base model."""

import json

from lima_align.pipeline.demo import DEMO_DATA, WHY, DemoConfig, reasons, run_demo


def test_shipped_demo_data_has_attribution():
    names = {p.name for p in DEMO_DATA.iterdir()}
    assert {"beer.stackexchange.com", "writingprompts_30.csv", "wikihow_steps_24.jsonl", "vicuna_8.jsonl",
            "ATTRIBUTION.md"} <= names
    text = (DEMO_DATA / "ATTRIBUTION.md").read_text()
    for licence in ("CC BY-SA 3.0", "Apache-2.0", "CC BY-NC-SA 3.0"):
        assert licence in text


def test_the_reasons_are_given_only_for_the_settings_they_were_measured_on():
    assert reasons(DemoConfig(out="elsewhere", device="cpu")) == WHY and WHY
    assert reasons(DemoConfig(epochs=3)) == () and reasons(DemoConfig.gpu()) == ()


def test_demo_options_become_its_settings_and_zero_turns_a_limit_off():
    from lima_align.cli import build_parser
    from lima_align.cli.demo import demo_config

    parse = build_parser().parse_args
    cfg = demo_config(parse(["demo", "--lr", "3e-5", "--max-chars", "0", "--new-token-lr", "0"]), cuda=False)
    assert (cfg.lr, cfg.max_chars, cfg.new_token_lr, cfg.epochs) == (3e-5, None, None, DemoConfig().epochs)
    cfg = demo_config(parse(["demo", "--max-chars", "800", "--new-token-lr", "0.05"]), cuda=True)
    assert (cfg.max_chars, cfg.new_token_lr, cfg.lr) == (800, 0.05, DemoConfig.gpu().lr)  # CUDA: the GPU setting
    assert demo_config(parse(["demo", "--cpu-demo"]), cuda=True) == DemoConfig()


def test_short_demo_runs_every_stage_and_resumes(tmp_path):
    cfg = DemoConfig(out=str(tmp_path / "demo"), model="smollm2-135m-instruct", per_source=2, test_prompts=2,
                     epochs=1, batch_size=8, max_len=96, max_new_tokens=6)
    lines = []
    results = run_demo(cfg, log=lines.append)
    out = tmp_path / "demo"
    assert results["curate"]["stackexchange"]["examples"] > 0
    assert results["mix"]["splits"]["train"] == 8 and results["mix"]["splits"]["test"] == 2
    assert results["train"]["steps"] == 1 and (out / "train").is_dir()
    mixed = [json.loads(x) for x in (out / "mix" / "train.jsonl").read_text().splitlines()]
    fits = [r for r in mixed if sum(len(t) for t in r["conversations"]) <= cfg.max_chars]
    assert 0 < len(fits) < len(mixed)  # the shipped wikiHow articles are longer than the demo's max_chars
    for name in ("before", "after"):
        rows = [json.loads(x) for x in (out / "outputs" / f"{name}.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(r["generator"] == name for r in rows)
    judgments = [json.loads(x) for x in (out / "judgments" / "after-vs-before.jsonl").read_text().splitlines()]
    assert len(judgments) == 2 and all(0.0 <= j["soft_preference"] <= 1.0 for j in judgments)  # weighted: none missing
    # the summary's stable keys: the three measurements
    summary = json.loads((out / "demo-summary.json").read_text())
    for side in ("before", "after"):
        stop = summary["style"][side]["eot_stop_rate"]
        rows = [json.loads(x) for x in (out / "outputs" / f"{side}.jsonl").read_text().splitlines()]
        assert stop == sum(r["finish_reason"] == "eot" for r in rows) / len(rows)  # EOT itself, not EOS
        assert summary["reference_loss"][side]["references"] == 10 and summary["reference_loss"][side]["mean_loss"] > 0
    diff = summary["reference_loss"]["difference"]
    assert abs(diff["diff"] - (summary["reference_loss"]["after"]["mean_loss"]
                               - summary["reference_loss"]["before"]["mean_loss"])) < 1e-9
    assert summary["why"] == []  # the reasons hold for the default settings only
    assert dict((what, demo) for what, demo, _ in summary["deltas"])["training examples"] == str(len(fits))
    assert sum(row["examples"] for row in summary["table1"]) == len(fits)
    pref = summary["judge"]["after_preferred"]
    assert pref["n_prompts"] == 2 and abs(pref["rate"] - sum(j["soft_preference"] for j in judgments) / 2) < 1e-9
    assert [p["id"] for p in summary["prompts"]] == sorted(r["id"] for r in judgments)
    page = (out / "report" / "index.html").read_text()
    assert "before and after" in page and page.count("class='pair'") == 2 and "<script" not in page.lower()
    assert (out / "report" / "judgments" / "index.html").is_file()
    assert any(line.startswith("[13/13] summary") for line in lines)
    # a second run skips every completed stage
    again = []
    run_demo(cfg, log=again.append)
    assert sum("done in an earlier run, skipped" in line for line in again) == 13
    # the stage keys: a longer answer budget redoes both generations and what reads them, nothing else
    changed = []
    run_demo(DemoConfig(**{**cfg.__dict__, "max_new_tokens": 7}), log=changed.append)
    redone = [line.split("] ", 1)[1].split(":", 1)[0] for line in changed if "starting it again from scratch" in line]
    assert redone == ["generate-before", "generate-after", "judge", "report", "summary"]
