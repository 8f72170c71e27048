"""The ablation table (``render_markdown`` / ``write_report``): prompt-clustered CIs, prompts x samples, and each
arm's difference from the first arm with its CI."""

import json
from types import SimpleNamespace

import pytest

from lima_align.evaluate.statistics import likert_summary
from lima_align.pipeline.ablate import AblationConfig, render_markdown, write_report

IDS = ["p1", "p1", "p2", "p2", "p3", "p3"]


def _arm(name, scores, ids=IDS):
    return {"arm": name, "likert": likert_summary(scores, ids), "train_examples": 10, "test_prompts": 3,
            "shortfalls": [], "test_prompt_ids": "x" if ids is IDS else "y", "last_loss": 1.5,
            "hyperparameters": {"lr": 1e-5}}


def _cfg(tmp_path):
    # the fields the report reads, without building a full AblationConfig (that validates training settings)
    return SimpleNamespace(name="quality", title=AblationConfig.title, model="m", samples=2, out=str(tmp_path))


def test_table_states_the_clustered_ci_and_the_paired_difference():
    # prompt means: base 3, 3, 2; new 4, 5, 3 -> paired differences 1, 2, 1: +1.33, t(0.975, 2) -> [-0.10, +2.77]
    arms = [_arm("base", [3, 3, 3, 3, 2, 2]), _arm("new", [4, 4, 5, 5, 3, 3])]
    md = render_markdown(_cfg("."), arms, [])
    assert "CI over PROMPTS" in md and "| vs base: difference [95% CI] |" in md
    new = next(line for line in md.splitlines() if line.startswith("| new |"))
    assert "| 3 prompts x 2 samples |" in new and "| +1.33 [-0.10, +2.77] (paired-t) |" in new
    base = next(line for line in md.splitlines() if line.startswith("| base |"))
    assert "| - |" in base  # no difference of the first arm from itself


def test_different_prompts_give_welch_and_old_summaries_still_render(tmp_path):
    arms = [_arm("base", [3, 3, 3, 3, 2, 2]), _arm("new", [4, 4, 5, 5, 3, 3], ["q1", "q1", "q2", "q2", "q3", "q3"])]
    summary = write_report(_cfg(tmp_path), arms)
    (diff,) = summary["differences"]
    assert (diff["arm"], diff["vs"], diff["ci_method"]) == ("new", "base", "welch-t")
    assert diff["diff"] == pytest.approx(4 - 8 / 3)
    assert json.loads((tmp_path / "ablation-summary.json").read_text())["differences"][0]["ci_method"] == "welch-t"
    md = (tmp_path / "ablation-summary.md").read_text()
    assert "(welch-t)" in md and "DIFFERENT test prompts" in md
    # an arm summary written before prompt means were recorded: no difference, but the row renders
    old = {**arms[1], "likert": {"n": 6, "missing": 0, "mean": 4.0, "ci": [3.0, 5.0]}}
    row = next(line for line in render_markdown(_cfg(tmp_path), [arms[0], old], []).splitlines()
               if line.startswith("| new |"))
    assert "| 6 |" in row and row.split(" | ")[7] == "-"  # no difference; its (absent) format metrics are "-" too
