"""The tiny selection ablation (configs/ablations/selection-tiny-cpu.yaml) end to end: every arm - random, lima,
longest, ifd, quality, deita and the untuned model in context - mixed, trained (not the icl arm), answered,
judged, and plotted with prompt-clustered CIs; each arm's training set has the property its strategy promises.

The arms fine-tune (and the icl arm prompts) a tiny random Llama with SmolLM2's tokenizer instead of the YAML's
135M model: the ablation's plumbing is under test, and seven 135M trainings would take most of the suite's
budget. The scorer and both judges are the real smollm2-135m-instruct."""

import json
from pathlib import Path

from lima_align.formats.rows import read_examples
from lima_align.pipeline.ablate import ARM_STAGES, ICL_STAGES, load_ablation, run_ablation

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ablations"


def _tiny_base(folder: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lima_align.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                 num_key_value_heads=1, vocab_size=len(tokenizer), max_position_embeddings=2048,
                                 )).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_tiny_selection_ablation_runs_every_arm_to_a_plot(tmp_path):
    out = tmp_path / "sel"
    model = _tiny_base(tmp_path / "tiny-base")
    cfg = load_ablation(CONFIGS / "selection-tiny-cpu.yaml", [f"out={out}", f"model={model}"])
    lines: list[str] = []
    summary = run_ablation(cfg, log=lines.append)
    names = [a["arm"] for a in summary["arms"]]
    assert names == ["random", "lima", "longest", "ifd", "quality", "deita", "icl"]
    for fig in ("ablation-likert.png", "ablation-likert.svg", "ablation-summary.md"):
        assert (out / fig).stat().st_size > 0
    arms = {a["arm"]: a for a in summary["arms"]}
    for name, arm in arms.items():
        lk = arm["likert"]
        assert lk["n"] + lk["missing"] == 2 * 2 and lk["design"].startswith("2 prompts")  # clustered by prompt
        assert arm["format"]["stop_rate"]["n"] == 4  # judge-free metrics over the same answers
        stages = ICL_STAGES if name == "icl" else ARM_STAGES
        assert all(any(f"[{name}] [{i}/{len(stages)}] {stage}:" in line for line in lines)
                   for i, stage in enumerate(stages, 1))
    trained = [a for a in arms.values() if a["arm"] != "icl"]
    assert all(a["train_examples"] == 4 and a["steps"] == 1 for a in trained)
    saved = {n: json.loads((out / "arms" / n / "arm-summary.json").read_text()) for n in names}
    assert len({json.dumps(saved[a["arm"]]["hyperparameters"], sort_keys=True) for a in trained}) == 1
    assert summary["hyperparameters"] == saved["random"]["hyperparameters"]  # the trained arms' settings
    assert len({a["test_prompt_ids"] for a in arms.values()}) == 1  # every arm answered the same prompts

    icl = arms["icl"]
    assert icl["train_examples"] == 0 and saved["icl"]["hyperparameters"] is None and icl["in_context"]["file"].endswith(
        "urial-style-3.yaml")
    assert not (out / "arms" / "icl" / "train").exists()
    rows = [json.loads(line) for line in (out / "arms" / "icl" / "outputs" / "icl.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["meta"]["icl"]["examples"] == 3 for r in rows)

    def train_rows(arm: str):
        return read_examples(out / "arms" / arm / "mix" / "train.jsonl")

    for arm, key in (("ifd", "ifd"), ("quality", "quality"), ("deita", "deita")):
        got = train_rows(arm)
        assert len(got) == 4 and all(key in ex.meta["mix"]["scores"] for ex in got), arm
    assert all(ex.meta["mix"]["scores"]["ifd"] <= 1.0 for ex in train_rows("ifd"))
    report = json.loads((out / "arms" / "quality" / "mix" / "train.report.json").read_text())
    scored_by = report["selection"]["draws"][0]["audit"]["scored_by"]["quality"]
    assert scored_by["judge"]["model"] == "smollm2-135m-instruct" and scored_by["prompt"]["version"].startswith(
        "lima-quality-weighted")
    assert (out / "score-cache" / "ifd.sqlite").is_file() and (out / "score-cache" / "judge.sqlite").is_file()
    longest = {ex.id for ex in train_rows("longest")}
    assert longest != {ex.id for ex in train_rows("random")}  # the arms really are different training sets
    md = (out / "ablation-summary.md").read_text()
    assert "| icl | in context |" in md and "stop rate" in md
