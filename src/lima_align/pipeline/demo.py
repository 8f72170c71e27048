"""``lima-align demo``: the whole LIMA pipeline, offline, small enough for a 2-core CPU.

curate (real excerpts shipped in ``lima_align/data/demo``) -> mix -> fine-tune a base model with the LIMA recipe
shape (scaled down, said so) -> generate answers to held-out prompts before and after tuning -> judge after vs
before (both orders) with the built-in local judge -> HTML report. Every stage writes its files into the run
folder and a marker when it completes; a re-run skips completed stages (training resumes from its last complete
checkpoint).
"""

from __future__ import annotations

import gc
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

from lima_align.fileio import write_json, write_jsonl
from lima_align.pipeline.stages import Stages

Log = Callable[[str], None]
DEMO_DATA = Path(str(files("lima_align").joinpath("data/demo")))


@dataclass
class DemoConfig:
    """The demo's knobs; the defaults fit a 2-core CPU in about 10 minutes."""

    out: str = "runs/demo"
    model: str = "gemma-3-270m"  # the base model to align
    judge_model: str = "smollm2-135m-instruct"  # the local judge (a plumbing check, not a trustworthy judge)
    per_source: int = 6  # training examples drawn per source
    test_prompts: int = 6
    epochs: int = 2
    lr: float = 1e-4  # the paper uses 1e-5 over 15 epochs of 1,000 examples; a demo has a few steps
    batch_size: int = 8
    max_len: int = 384  # the paper trims at 2,048 tokens
    max_new_tokens: int = 96  # the paper allows 2,048
    seed: int = 0
    device: str | None = None
    demo_label: str = "DEMO (scaled down: few examples, short texts, few steps)"

    @classmethod
    def gpu(cls, **overrides: Any) -> "DemoConfig":
        """A larger, non-demo setting for a GPU: more data, full-length texts, the recipe's learning rate."""
        values = dict(per_source=200, test_prompts=8, epochs=10, lr=1e-5, batch_size=32, max_len=2048,
                      max_new_tokens=1024, demo_label="GPU setting (all shipped candidates, recipe LR)")
        values.update(overrides)
        return cls(**values)


def curate_all(out: Path, cfg: DemoConfig) -> dict[str, Any]:
    """Candidates from each shipped excerpt, with the sources' own code (thresholds relaxed for tiny data)."""
    from lima_align.sources import natural_instructions, reddit, wikihow
    from lima_align.sources.stackexchange import CurateConfig, SelectionConfig, run_stackexchange

    cand = out / "candidates"
    se_sel = SelectionConfig(min_score=2, min_chars=300, seed=cfg.seed)
    se = run_stackexchange(CurateConfig(paths=[str(DEMO_DATA / "beer.stackexchange.com")], selection=se_sel),
                           cand / "stackexchange.jsonl", cand / "stackexchange.report.json")
    counts = {"stackexchange": len(se.examples)}
    wh, _ = wikihow.curate([DEMO_DATA / "wikihow_steps_24.jsonl"],
                           wikihow.WikiHowConfig(n=cfg.per_source * 2, seed=cfg.seed, min_chars=300),
                           wikihow.load_category_table(None))
    wp, _, _ = reddit.curate([DEMO_DATA / "writingprompts_30.csv"], reddit.RedditConfig(max_words=300))
    sni, _ = natural_instructions.curate(sorted(DEMO_DATA.glob("task*.json")), seed=cfg.seed)
    for name, examples in (("wikihow", wh), ("writingprompts", wp), ("natural_instructions", sni)):
        counts[name] = write_jsonl(cand / f"{name}.jsonl", (ex.to_dict() for ex in examples))
    return {"candidates": counts, "summary": ", ".join(f"{k} {v}" for k, v in counts.items())}


def mix(out: Path, cfg: DemoConfig) -> dict[str, Any]:
    from lima_align.curate.mix import InputSpec, MixConfig, build_mix, write_mix

    cand = out / "candidates"
    names = ("stackexchange", "wikihow", "writingprompts", "natural_instructions")
    inputs = [InputSpec(path=str(cand / f"{n}.jsonl"), n=cfg.per_source, name=n) for n in names]
    test = [InputSpec(path=str(DEMO_DATA / "vicuna_8.jsonl"), n=cfg.test_prompts, name="test-prompts")]
    mix_cfg = MixConfig(inputs=inputs, test=test, seed=cfg.seed, strategy="random")
    mix_cfg.diversity.enabled = False  # the embedding model adds a minute; `lima-align mix` draws the map
    result = build_mix(mix_cfg)
    report = write_mix(result, mix_cfg, out / "mix" / "train.jsonl")
    sizes = {split: len(rows) for split, rows in result.splits.items()}
    return {"splits": sizes, "shortfalls": report.get("shortfalls"),
            "summary": f"train {sizes.get('train')}, test {sizes.get('test')} (report {out / 'mix'})"}


def train(out: Path, cfg: DemoConfig, log: Log) -> dict[str, Any]:
    from lima_align.train.config import TrainConfig
    from lima_align.train.run import train as run_train

    config = TrainConfig(model=cfg.model, data=str(out / "mix" / "train.jsonl"), out=str(out / "train"),
                         epochs=cfg.epochs, lr=cfg.lr, lr_end=cfg.lr / 10, batch_size=cfg.batch_size,
                         micro_batch_size=min(4, cfg.batch_size), max_len=cfg.max_len, residual_dropout=0.2,
                         save_total_limit=1, tensorboard=False, seed=cfg.seed)
    log(f"  {cfg.demo_label}: {cfg.model}, {cfg.epochs} epochs, lr {cfg.lr} -> {cfg.lr / 10}, batch "
        f"{cfg.batch_size}, trim {cfg.max_len} tokens (the paper: 15 epochs, 1e-5 -> 1e-6, batch 32, 2,048)")
    result = run_train(config, resume=(out / "train").is_dir(), log=lambda m: log("  " + m))
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    gc.collect()
    return {"checkpoint": str(result.checkpoints[-1]), "steps": result.global_step,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "summary": f"{result.global_step} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else ""}


def generate(out: Path, cfg: DemoConfig, model: str, name: str) -> dict[str, Any]:
    from lima_align.generate.batch import generate_file
    from lima_align.generate.engine import HFEngine
    from lima_align.generate.loading import load_for_generation
    from lima_align.generate.decoding import SamplingConfig

    lm, tokenizer, fmt = load_for_generation(model, add_eot=True, device=cfg.device)
    engine = HFEngine(lm, tokenizer, fmt, batch_size=8)
    path = out / "outputs" / f"{name}.jsonl"
    report = generate_file(engine, out / "mix" / "train.test.jsonl", path,
                           SamplingConfig(max_new_tokens=cfg.max_new_tokens, seed=cfg.seed), generator=name)
    del lm, engine
    gc.collect()
    return {"outputs": str(path), **report.to_dict(),
            "summary": f"{report.written} answers, {report.generated_tokens} tokens -> {path}"}


def judge_and_report(out: Path, cfg: DemoConfig) -> dict[str, Any]:
    from lima_align.evaluate.judge_config import JudgeConfig
    from lima_align.evaluate.judging import JudgeSetup, judge_pairwise
    from lima_align.report.build import build_report

    judge = JudgeConfig(name=f"{cfg.judge_model}-local", kind="local", model=cfg.judge_model, temperature=0.0,
                        max_tokens=64, concurrency=1, device=cfg.device)
    judgments = out / "judgments" / "after-vs-before.jsonl"
    report, pairing = judge_pairwise(JudgeSetup(judge, cache_path=out / "judgments" / "cache.sqlite"),
                                     out / "outputs" / "after.jsonl", out / "outputs" / "before.jsonl", judgments)
    paths = build_report([judgments], out / "report", title="lima-align demo: after vs before tuning")
    html = next((str(p) for p in paths if str(p).endswith(".html")), str(out / "report"))
    return {"judgments": str(judgments), "paired": pairing["paired"], "report": html,
            "summary": f"{pairing['paired']} pairs judged in both orders -> {html}"}


def run_demo(cfg: DemoConfig, log: Log = print) -> dict[str, Any]:
    """Run every stage (skipping completed ones); returns what each stage produced."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "demo-config.json", asdict(cfg))
    stages = Stages(out, log)
    total = 6
    log(f"lima-align demo -> {out.resolve()}  [{cfg.demo_label}]")
    results = {
        "curate": stages.run("curate", total, lambda: curate_all(out, cfg)),
        "mix": stages.run("mix", total, lambda: mix(out, cfg)),
        "generate-before": stages.run("generate-before", total, lambda: generate(out, cfg, cfg.model, "before")),
    }
    results["train"] = stages.run("train", total, lambda: train(out, cfg, log))
    results["generate-after"] = stages.run("generate-after", total,
                                           lambda: generate(out, cfg, results["train"]["checkpoint"], "after"))
    results["judge-report"] = stages.run("judge-report", total, lambda: judge_and_report(out, cfg))
    write_json(out / "demo-summary.json", results)
    return results
