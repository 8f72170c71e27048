"""``lima-align demo``: the whole LIMA pipeline, offline, small enough for a 2-core CPU.

curate (real excerpts shipped in ``lima_align/data/demo``) -> mix -> fine-tune a base model with the LIMA recipe
shape (scaled down, said so) -> generate answers to held-out prompts before and after tuning -> judge after vs
before (both orders) with the built-in local judge -> HTML report. The stages are the steps of ``lima-align run``
(:mod:`lima_align.pipeline.steps`), keyed the same way: a re-run skips what is done with the same settings, redoes
what changed (training resumes from its last complete checkpoint).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

from lima_align.fileio import write_json
from lima_align.generate.decoding import SamplingConfig
from lima_align.pipeline import steps
from lima_align.pipeline.stages import Stages
from lima_align.pipeline.steps import GenerateJob, Pairing, ReferenceJob, SourceSpec

Log = Callable[[str], None]
DEMO_DATA = Path(str(files("lima_align").joinpath("data/demo")))
REFERENCES = DEMO_DATA / "vicuna_references_10.jsonl"  # held-out GPT-4 reference answers (reference loss)


@dataclass
class DemoConfig:
    """The demo's knobs; the defaults fit a 2-core CPU in about 11 minutes (why each is what it is: WHY)."""

    out: str = "runs/demo"
    model: str = "gemma-3-270m"  # the base model to align
    judge_model: str = "smollm2-135m-instruct"  # the local judge (a plumbing check, not a trustworthy judge)
    per_source: int = 30  # training candidates drawn per source (the shipped excerpts hold fewer: all of them)
    max_chars: int | None = 1000  # longer examples are left out: each fits the trim whole, EOT included
    test_prompts: int = 8
    epochs: int = 5
    lr: float = 7e-5  # the paper uses 1e-5 over 15 epochs of 1,000 examples; the demo has 20 steps
    new_token_lr: float | None = 3e-2  # the EOT row's own rate: at lr it would not become likely in 20 steps
    batch_size: int = 8
    max_len: int = 384  # the paper trims at 2,048 tokens
    max_new_tokens: int = 384  # the paper allows 2,048; 384 = the trim, the longest answer trained on
    seed: int = 0
    device: str | None = None
    demo_label: str = "DEMO (scaled down: few examples, short texts, few steps)"

    @classmethod
    def gpu(cls, **overrides: Any) -> "DemoConfig":
        """A larger, non-demo setting for a GPU: more data, full-length texts, the recipe's learning rate."""
        values = dict(per_source=200, max_chars=None, test_prompts=8, epochs=10, lr=1e-5, batch_size=32,
                      max_len=2048, max_new_tokens=1024, demo_label="GPU setting (all shipped candidates, recipe LR)")
        values.update(overrides)
        return cls(**values)


# Why the CPU demo's settings are what they are (printed with the run, measured on gemma-3-270m, 2 cores).
WHY = (
    "examples longer than max_chars are left out: an example cut at the trim loses its closing EOT and teaches "
    "the model not to stop",
    "the EOT row learns at new_token_lr: EOT starts as the mean embedding, near the median of gemma-3's 262k "
    "vocabulary (log-probability about -23 where an answer ends), and AdamW moves a weight about lr per step, so "
    "at lr it stays unlikely (measured: about -19 after 12 steps at 1e-4; about -2, a top-3 token, at 1e-2)",
    "20 optimizer steps (5 epochs of 26 short examples): on 2 cores a step of 8 examples takes about 19 s (the "
    "262k-entry LM head is most of it), so this is what fits in about 6 minutes; short examples also teach short "
    "answers, which end within the answer cap",
    "lr 7e-5: measured on 8 held-out prompts, 1e-4 taught stopping as well but moved the model away from the "
    "held-out reference answers (their loss rose); 5e-5 kept the references likely but stopped fewer answers",
)


WHY_FIELDS = ("model", "per_source", "max_chars", "epochs", "lr", "new_token_lr", "batch_size", "max_len",
              "max_new_tokens", "seed")


def reasons(cfg: DemoConfig) -> tuple[str, ...]:
    """WHY when ``cfg`` trains with the CPU demo's settings (what the reasons were measured on), else nothing."""
    default = DemoConfig()
    return WHY if all(getattr(cfg, f) == getattr(default, f) for f in WHY_FIELDS) else ()


def demo_sources(cfg: DemoConfig) -> list[SourceSpec]:
    """The shipped excerpts as sources, each curated by its source's own code (thresholds relaxed for tiny data)."""
    return [
        SourceSpec("stackexchange", "stackexchange", [str(DEMO_DATA / "beer.stackexchange.com")],
                   {"min-score": 2, "min-chars": 300, "seed": cfg.seed, "no-progress": True}),
        SourceSpec("wikihow", "wikihow", [str(DEMO_DATA / "wikihow_steps_24.jsonl")],
                   {"n": cfg.per_source * 2, "seed": cfg.seed, "min-chars": 300}),
        SourceSpec("writingprompts", "reddit", [str(DEMO_DATA / "writingprompts_30.csv")], {"max-words": 300}),
        SourceSpec("natural_instructions", "natural-instructions", [str(p) for p in sorted(DEMO_DATA.glob("task*.json"))],
                   {"seed": cfg.seed}),
    ]


def mix_config(cfg: DemoConfig, out: Path) -> Any:
    from lima_align.curate.mix import InputSpec, MixConfig

    inputs = [InputSpec(path=f"candidates/{s.name}.jsonl", n=cfg.per_source, name=s.name)
              for s in demo_sources(cfg)]
    test = [InputSpec(path=str(DEMO_DATA / "vicuna_8.jsonl"), n=cfg.test_prompts, name="test-prompts")]
    mix = MixConfig(inputs=inputs, test=test, seed=cfg.seed, strategy="random", base_dir=str(out))
    mix.diversity.enabled = False  # the embedding model adds a minute; `lima-align mix` draws the map
    return mix


def train_config(cfg: DemoConfig, out: Path) -> Any:
    from lima_align.chat_format import ChatFormat
    from lima_align.train.config import TrainConfig

    return TrainConfig(model=cfg.model, data=str(out / "mix" / "train.jsonl"), out=str(out / "train"),
                       max_chars=cfg.max_chars, epochs=cfg.epochs, lr=cfg.lr, lr_end=cfg.lr / 10,
                       new_token_lr=cfg.new_token_lr, batch_size=cfg.batch_size,
                       micro_batch_size=min(4, cfg.batch_size), chat=ChatFormat(max_len=cfg.max_len),
                       residual_dropout=0.2, save_total_limit=1, tensorboard=False, seed=cfg.seed)


def judge_config(cfg: DemoConfig) -> Any:
    from lima_align.evaluate.judge_config import JudgeConfig

    return JudgeConfig(name=f"{cfg.judge_model}-local", kind="local", model=cfg.judge_model, mode="weighted",
                       temperature=0.0, max_tokens=64, concurrency=1, device=cfg.device)


def deltas(cfg: DemoConfig, trained: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What the demo scales down against the paper (printed, and in the report)."""
    return [("base model", cfg.model, "LLaMA 65B"), ("training examples", str(trained.get("examples", "?")), "1,000"),
            ("epochs / optimizer steps", f"{cfg.epochs} / {trained['steps']}", "15 / 465"),
            ("learning rate", f"{cfg.lr:g} -> {cfg.lr / 10:g}", "1e-5 -> 1e-6"),
            ("EOT embedding learning rate", "the same" if cfg.new_token_lr is None else
             f"{cfg.new_token_lr:g} -> {cfg.new_token_lr / 10:g}", "the same"),
            ("batch", str(cfg.batch_size), "32"), ("trim", f"{cfg.max_len} tokens", "2,048 tokens"),
            ("answer cap", f"{cfg.max_new_tokens} tokens", "2,048 tokens")]


def run_demo(cfg: DemoConfig, log: Log = print) -> dict[str, Any]:
    """Run every stage (skipping completed ones); returns what each stage produced."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "demo-config.json", asdict(cfg))
    sources = demo_sources(cfg)
    stages = Stages(out, log, total=len(sources) + 9)
    log(f"lima-align demo -> {out.resolve()}  [{cfg.demo_label}]")
    r: dict[str, Any] = {"curate": {s.name: steps.curate(stages, s, out) for s in sources}}
    r["mix"] = steps.mix(stages, mix_config(cfg, out), out)
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    answers = {name: out / "outputs" / f"{name}.jsonl" for name in ("before", "after")}
    before = GenerateJob(name="before", model=cfg.model, model_key=cfg.model, prompts=out / "mix" / "train.test.jsonl",
                         out=answers["before"], sampling=sampling, device=cfg.device, add_eot=True)
    r["generate-before"] = steps.generate(stages, before, stage="generate-before")
    losses = {name: out / "reference-loss" / f"{name}.json" for name in ("before", "after")}
    r["reference-loss-before"] = steps.reference_loss(stages, ReferenceJob(
        "before", cfg.model, cfg.model, REFERENCES, losses["before"], cfg.device, add_eot=True),
        stage="reference-loss-before")
    log(f"  {cfg.demo_label}: {cfg.model}, {cfg.epochs} epochs, lr {cfg.lr} -> {cfg.lr / 10}"
        + ("" if cfg.new_token_lr is None else f" (EOT row {cfg.new_token_lr})")
        + f", batch {cfg.batch_size}, trim {cfg.max_len} tokens, examples up to {cfg.max_chars or 'any'} characters "
          "(the paper: 15 epochs, 1e-5 -> 1e-6 for every weight, batch 32, 2,048 tokens, 1,000 examples)")
    for reason in reasons(cfg):
        log(f"  why: {reason}")
    r["train"] = steps.train(stages, train_config(cfg, out), log)
    checkpoint = out / "train" / Path(r["train"]["checkpoint"]).name
    tuned = [r["train"]["key"], checkpoint.name]
    after = GenerateJob(name="after", model=str(checkpoint), model_key=tuned, prompts=before.prompts,
                        out=answers["after"], sampling=sampling, device=cfg.device)
    r["generate-after"] = steps.generate(stages, after, stage="generate-after")
    r["reference-loss-after"] = steps.reference_loss(stages, ReferenceJob(
        "after", str(checkpoint), tuned, REFERENCES, losses["after"], cfg.device), stage="reference-loss-after")
    judgments = out / "judgments" / "after-vs-before.jsonl"
    r["judge"] = steps.judge_pairs(stages, judge_config(cfg), [Pairing("before", answers["after"],
                                                                       answers["before"], judgments)],
                                   out / "judgments" / "cache.sqlite")
    r["report"] = steps.report(stages, [judgments], out / "report" / "judgments",
                               "lima-align demo: after vs before tuning (judge details)",
                               outputs=[answers["before"], answers["after"]])
    r["summary"] = stages.run("summary", lambda: _summary(cfg, out, r, answers, losses, judgments),
                              key={k: v["key"] for k, v in r.items() if k != "curate"},
                              outputs=[out / "demo-summary.json", out / "report" / "index.html"])
    return r


def _summary(cfg: DemoConfig, out: Path, r: dict[str, Any], answers: dict[str, Path], losses: dict[str, Path],
             judgments: Path) -> dict[str, Any]:
    from lima_align.pipeline import demo_summary as ds

    judge = ds.judge_preference(judgments, cfg.judge_model)
    examples = ds.trained_examples(out / "mix" / "train.jsonl", cfg.max_chars)
    trained = {**r["train"], "examples": len(examples)}
    data = {"title": "lima-align demo: what a few examples teach a base model", "label": cfg.demo_label,
            "model": cfg.model, "deltas": deltas(cfg, trained), "why": list(reasons(cfg)),
            "table1": ds.training_mix(examples, cfg.model),
            "style": {name: ds.style(path) for name, path in answers.items()},
            "reference_loss": ds.reference_change(losses["before"], losses["after"]), "judge": judge,
            "prompts": ds.prompt_rows(answers["before"], answers["after"], judge["per_prompt"]),
            "train": {k: r["train"].get(k) for k in ("steps", "first_loss", "last_loss")}}
    paths = ds.write_summary(data, out)
    b, a = data["style"]["before"]["eot_stop_rate"], data["style"]["after"]["eot_stop_rate"]
    pref = judge["after_preferred"]["rate"]
    return {**paths, "eot_stop_rate": {"before": b, "after": a},
            "reference_loss": {k: data["reference_loss"][k]["mean_loss"] for k in ("before", "after")},
            "after_preferred": pref,
            "summary": f"stop rate {b} -> {a}; reference loss {data['reference_loss']['before']['mean_loss']:.3f} -> "
                       f"{data['reference_loss']['after']['mean_loss']:.3f}; after preferred {pref}"}
