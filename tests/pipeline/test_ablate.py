"""`lima-align ablate`: the tiny CPU ablation end to end (every arm to a plot), resumability, and the shipped
paper ablations resolve (arms, sizes, identical training settings) without running."""

import json
from pathlib import Path

import pytest

from lima_align.pipeline.ablate import ARM_STAGES, load_ablation, mix_config, run_ablation, train_config
from lima_align.errors import LimaError
from lima_align.pipeline.steps import hyperparameters

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ablations"


def test_tiny_ablation_runs_every_arm_to_a_plot_and_resumes(tmp_path):
    # parallel=2: both arms at once, each `lima-align ablate RESOLVED.yaml --arm NAME` in its own process
    out = tmp_path / "abl"
    cfg = load_ablation(CONFIGS / "tiny-cpu.yaml", [f"out={out}", "parallel=2", "devices=[cpu]"])
    lines = []
    summary = run_ablation(cfg, log=lines.append)
    names = [a.name for a in cfg.arms]
    started = [line for line in lines if "started in its own process" in line]
    assert len(started) == 2 and all("device cpu" in line for line in started)
    for n in names:  # each process ran its arm's five stages (the parent then only read their markers)
        log = (out / "arms" / n / "log.txt").read_text()
        assert all(f"[{n}] [{i}/5] {stage}:" in log for i, stage in enumerate(ARM_STAGES, 1))
    assert sum("done in an earlier run, skipped" in line for line in lines) == len(names) * len(ARM_STAGES)
    assert [a["arm"] for a in summary["arms"]] == names == ["stackexchange", "wikihow"]
    for fig in ("ablation-likert.png", "ablation-likert.svg", "ablation-summary.json", "ablation-summary.md"):
        assert (out / fig).stat().st_size > 0
    arm_summaries = [json.loads((out / "arms" / n / "arm-summary.json").read_text()) for n in names]
    for arm in arm_summaries:
        assert arm["train_examples"] > 0 and arm["steps"] >= 1 and arm["test_prompts"] == 2
        lk = arm["likert"]
        assert lk["n"] + lk["missing"] == 2 * 2  # 2 prompts x 2 samples, every answer graded
        rows = (out / "arms" / arm["arm"] / "outputs" / f"{arm['arm']}.jsonl").read_text().splitlines()
        assert sorted(json.loads(r)["sample"] for r in rows) == [0, 0, 1, 1]
    # identical training hyperparameters in every arm; only data and output folder differ
    assert arm_summaries[0]["hyperparameters"] == arm_summaries[1]["hyperparameters"]
    assert arm_summaries[0]["hyperparameters"]["epochs"] == 1 and "data" not in arm_summaries[0]["hyperparameters"]
    assert len({a["test_prompt_ids"] for a in arm_summaries}) == 1  # the same test prompts
    md = (out / "ablation-summary.md").read_text()
    assert "| stackexchange |" in md and "| wikihow |" in md
    # a re-run skips the candidates and every stage of every arm, and rewrites the plot
    again = []
    run_ablation(cfg, log=again.append)
    assert sum("done in an earlier run, skipped" in line for line in again) == 4 + len(names) * len(ARM_STAGES)
    assert any(line.startswith("plot: ") for line in again)
    # the stage keys, as in `lima-align run`: changed training settings with checkpoints on disk are refused
    with pytest.raises(LimaError, match=r"train: its settings or inputs changed since it ran \(train.lr\)"):
        run_ablation(load_ablation(CONFIGS / "tiny-cpu.yaml", [f"out={out}", "train.lr=3e-4"]), log=lambda m: None)
    assert (out / "arms" / "stackexchange" / "train").is_dir()  # nothing deleted


@pytest.mark.parametrize("name,arms", [("diversity", {"stackexchange-filtered": 2000, "wikihow": 2000,
                                                       "mixed": 2000}),
                                       ("quality", {"stackexchange-filtered": 2000,
                                                    "stackexchange-unfiltered": 2000}),
                                       ("quantity", {f"se-{k}k": k * 1000 for k in (2, 4, 8, 16, 32)}),
                                       ("long-is-more", {"longest-2k": 2000, "random-2k": 2000})])
def test_paper_ablations_resolve(name, arms, tmp_path):
    cfg = load_ablation(CONFIGS / f"{name}.yaml", [f"out={tmp_path}"])
    assert cfg.samples == 5 and cfg.judge.endswith("chatgpt-likert.yaml")
    assert {a.name: a.examples for a in cfg.arms} == arms
    hypers = set()
    for arm in cfg.arms:
        mix = mix_config(cfg, arm)
        assert sum(spec.n for spec in mix.inputs) == arms[arm.name]
        assert sum(spec.n for spec in mix.test) == 300  # the paper's test prompts, the same in every arm
        t = train_config(cfg, tmp_path / arm.name)
        assert (t.epochs, t.lr, t.batch_size, t.residual_dropout) == (15, 1e-5, 64, 0.2)
        hypers.add(json.dumps(hyperparameters(t), sort_keys=True))
    assert len(hypers) == 1
    if name == "long-is-more":
        assert [mix_config(cfg, a).strategy for a in cfg.arms] == ["longest", "random"]
    if name == "diversity":
        assert [s.n for s in mix_config(cfg, cfg.arms[2]).inputs] == [1000, 1000]


def test_cli_prints_the_resolved_config(capsys):
    from lima_align.cli import main

    assert main(["ablate", str(CONFIGS / "quantity.yaml"), "samples=3", "train.epochs=2", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "samples: 3" in text and "epochs: 2" in text and "se-32k" in text
    assert main(["ablate", str(CONFIGS / "quantity.yaml"), "no_such_key=1"]) == 2  # a user error, one line


def test_gpu_slots_count_within_the_visible_gpus(monkeypatch):
    from lima_align.pipeline.arm_processes import _slot_device

    cfg = load_ablation(CONFIGS / "tiny-cpu.yaml", ["parallel=2", "devices=[cuda:0,cuda:1]"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # e.g. what a scheduler gave this job
    assert [(_slot_device(cfg, s)[0], _slot_device(cfg, s)[1]["CUDA_VISIBLE_DEVICES"]) for s in (0, 1)] == [
        ("cuda", "3"), ("cuda", "5")]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert _slot_device(cfg, 1)[1]["CUDA_VISIBLE_DEVICES"] == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    with pytest.raises(LimaError, match="cuda:1 is not among the 1 visible GPU"):
        _slot_device(cfg, 1)


def test_the_selection_ablation_resolves_to_equal_arms_and_lima_draws_from_every_source(tmp_path):
    cfg = load_ablation(CONFIGS / "selection.yaml", [f"out={tmp_path}"])
    trained = [a for a in cfg.arms if not a.icl]
    assert [a.name for a in cfg.arms if a.icl] == ["icl-urial-3"]
    mixes = {a.name: mix_config(cfg, a) for a in trained}
    assert {name: sum(s.n for s in m.inputs) for name, m in mixes.items()} == {
        f"{s}-1k": 1000 for s in ("random", "lima", "longest", "ifd", "quality", "deita")}
    assert {m.strategy for m in mixes.values()} == {"random", "lima", "longest", "ifd", "quality", "deita"}
    lima = mixes["lima-1k"].inputs  # the paper's proportions over its sources, not the pool's first 1,000 rows
    assert {s.path for s in lima} == {f"candidates/{f}.jsonl" for f in
                                      ("stackexchange", "wikihow", "writingprompts", "natural_instructions")}
    assert [s.n for s in lima] == [250, 250, 250, 188, 62]
    assert len({json.dumps(hyperparameters(train_config(cfg, tmp_path / a.name)), sort_keys=True)
                for a in trained}) == 1
