"""``lima-align ablate``: the LIMA ablations (section 5, Figures 5-6) and "Long Is More" as one resumable job.

An ablation is a list of *arms*; each arm is a mix recipe (a ``configs/mix/*.yaml`` path, inline keys, or both,
plus ``key=value`` overrides). Every arm runs the same stages, one arm after the other::

    mix -> train (the SAME hyperparameters for every arm) -> generate N samples per test prompt
        -> Likert 1-6 helpfulness judge -> per-arm summary (mean, two-sided 95% Student-t CI)

then one bar plot of the arms' means with their CIs (PNG + SVG) and ``ablation-summary.json`` / ``.md``, with
judge-free format metrics of each arm's answers beside the Likert means (stop rate, list rate, median tokens).
An arm with ``icl: FILE`` is the in-context arm (URIAL-style): no mix and no training; the untuned ``model``
answers in context (:mod:`lima_align.generate.icl`), then is judged like every other arm. Scored mix strategies
(ifd, quality, deita ...) share one score cache, ``<out>/score-cache``, unless a recipe sets its own.
With ``parallel: N`` the arms run N at a time, each in its own process pinned to one of ``devices`` (e.g. one
GPU each; :mod:`lima_align.pipeline.arm_processes`); the plot waits for all of them. Each arm lives in
``<out>/arms/<name>/``. Its stages are the steps of ``lima-align run`` (:mod:`lima_align.pipeline.steps`), keyed
the same way: a re-run skips finished stages and arms, redoes a stage whose settings or inputs changed (and what
reads from it), and resumes an interrupted one (training from its last complete checkpoint; generation and
judging row by row). Changed training settings after checkpoints exist are an error naming what changed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lima_align.config import ConfigError, _set_dotted, from_dict, load_config, parse_override, to_dict, yaml_with
from lima_align.errors import LimaError
from lima_align.fileio import atomic_write, write_json
from lima_align.generate.decoding import SamplingConfig
from lima_align.generate.engines import EngineOptions
from lima_align.pipeline import steps
from lima_align.pipeline.arm_processes import run_arms_in_processes
from lima_align.pipeline.demo import DEMO_DATA, DemoConfig, demo_sources
from lima_align.pipeline.stages import Stages
from lima_align.pipeline.steps import PER_RUN, GenerateJob

Log = Callable[[str], None]
ARM_STAGES = ("mix", "train", "generate", "judge", "summary")
ICL_STAGES = ("generate", "judge", "summary")


@dataclass
class ArmConfig:
    """One arm: a mix recipe from a file and/or inline keys, then overrides; ``examples`` sets its size."""

    name: str = ""
    mix: str = ""  # a mix recipe YAML (e.g. configs/mix/ablation-se-filtered.yaml), relative to the working dir
    recipe: dict[str, Any] = field(default_factory=dict)  # inline MixConfig keys, merged over the file's
    overrides: list[str] = field(default_factory=list)  # key=value on the recipe (dotted keys for sections)
    examples: int = 0  # > 0: total training examples, split equally across the recipe's training inputs
    icl: str = ""  # an in-context prompt file (configs/icl/*.yaml): no mix, no training, the base model in context

    def __post_init__(self) -> None:
        if self.icl and (self.mix or self.recipe or self.overrides or self.examples):
            raise ValueError(f"arm {self.name!r}: an icl arm is not trained; give it no mix, recipe or examples")


@dataclass
class AblationConfig:
    """An ablation study; the YAMLs under ``configs/ablations/`` override these defaults."""

    name: str = "ablation"
    title: str = "Helpfulness (1-6 Likert, mean and 95% CI)"
    out: str = "runs/ablation"
    arms: list[ArmConfig] = field(default_factory=list)
    base_dir: str = ""  # mix input paths are relative to this ("" = the working dir; with curate_demo: <out>)
    curate_demo: bool = False  # curate the excerpts shipped in lima_align/data/demo into <out>/candidates first
    demo_per_source: int = 6  # with curate_demo: wikiHow candidates drawn = 2x this
    model: str = "gemma-3-270m"  # the base model every arm fine-tunes
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys, identical for every arm
    test_prompts: str = ""  # one prompts file for every arm ("" = each arm's mix test split)
    test_limit: int = 0  # > 0: only the first N test prompts
    samples: int = 5  # answers sampled per test prompt (the paper: 5)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # the paper's decoding by default
    gen_batch_size: int = 8
    engine: EngineOptions = field(default_factory=EngineOptions)  # hf, or vllm with its GPU options
    judge: str = ""  # a judge YAML (configs/judges/*.yaml)
    judge_settings: dict[str, Any] = field(default_factory=dict)  # JudgeConfig keys, merged over the file's
    device: str | None = None  # generation and local judge device (None: cuda when available)
    seed: int = 0  # mix seed for recipes that do not set one
    parallel: int = 1  # arms run at once, each in its own process (1: one after the other, in this process)
    devices: list[str] = field(default_factory=list)  # one per parallel slot, e.g. [cuda:0, cuda:1] ([] = device)

    def __post_init__(self) -> None:
        names = [a.name for a in self.arms]
        if not self.arms or not all(names):
            raise ValueError("give at least one arm, each with a name")
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique: {names}")
        bad = [n for n in names if not n.replace("-", "").replace("_", "").replace(".", "").isalnum()]
        if bad:
            raise ValueError(f"arm names become folder names; use letters, digits, - _ . only: {bad}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {self.parallel}")
        for key in PER_RUN + ("model",):
            if key in self.train:
                raise ValueError(f"train.{key} is set per arm (or by 'model'); remove it from 'train'")
        from lima_align.train.config import TrainConfig

        typed = to_dict(from_dict(TrainConfig, self.train, where="ablation", prefix="train."))  # unknown keys fail
        self.train = {k: typed.get(k, v) if not isinstance(v, dict) else v for k, v in self.train.items()}


def load_ablation(path: str | Path, overrides: list[str] | None = None) -> AblationConfig:
    return load_config(AblationConfig, path, overrides)


# ------------------------------------------------------------------------------------------- resolving
def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def mix_config(cfg: AblationConfig, arm: ArmConfig) -> Any:
    """The arm's resolved :class:`~lima_align.curate.mix.MixConfig`."""
    from lima_align.curate.mix import MixConfig

    values = yaml_with(arm.mix, arm.recipe)
    for item in arm.overrides:
        _set_dotted(values, *parse_override(item))
    values.setdefault("seed", cfg.seed)
    if not values.get("base_dir"):
        values["base_dir"] = cfg.base_dir or (cfg.out if cfg.curate_demo else "")
    if arm.examples > 0:
        inputs = values.get("inputs") or []
        if not inputs:
            raise ConfigError(f"arm {arm.name!r}: 'examples' needs a recipe with training inputs")
        values["inputs"] = [{**spec, "n": n} for spec, n in zip(inputs, _split(arm.examples, len(inputs)))]
    if not (values.get("scoring") or {}).get("cache_dir"):
        values.setdefault("scoring", {})["cache_dir"] = str(Path(cfg.out) / "score-cache")  # shared by the arms
    mix = from_dict(MixConfig, values, where=f"arm {arm.name!r} mix recipe")
    mix.diversity.enabled = False if "diversity" not in values else mix.diversity.enabled  # the map costs a model
    if not mix.inputs:
        raise ConfigError(f"arm {arm.name!r}: the mix recipe has no training inputs")
    return mix


def train_config(cfg: AblationConfig, arm_dir: Path) -> Any:
    """The arm's :class:`~lima_align.train.config.TrainConfig`: shared keys + this arm's data and folder."""
    from lima_align.train.config import TrainConfig

    values = {"tensorboard": False, "save_total_limit": 1, **cfg.train, "model": cfg.model,
              "data": str(arm_dir / "mix" / "train.jsonl"), "out": str(arm_dir / "train")}
    return from_dict(TrainConfig, values, where="ablation train settings")


def judge_config(cfg: AblationConfig) -> Any:
    from lima_align.evaluate.judge_config import judge_from

    return judge_from(cfg.judge, cfg.judge_settings, cfg.device, where="ablation judge")


# ---------------------------------------------------------------------------------------------- stages
def curate_demo_candidates(stages: Stages, cfg: AblationConfig) -> None:
    """The shipped excerpts curated as the demo curates them, and its test prompts, into ``<out>/candidates``."""
    out = Path(cfg.out)
    for spec in demo_sources(DemoConfig(per_source=cfg.demo_per_source, seed=cfg.seed)):
        steps.curate(stages, spec, out)
    shutil.copyfile(DEMO_DATA / "vicuna_8.jsonl", out / "candidates" / "test-prompts.jsonl")


def test_prompts_path(cfg: AblationConfig, arm_dir: Path) -> Path:
    if not cfg.test_prompts:
        return arm_dir / "mix" / "train.test.jsonl"
    path = Path(cfg.test_prompts)
    base = cfg.base_dir or (cfg.out if cfg.curate_demo else "")
    return path if path.is_absolute() or not base else Path(base) / path


FORMAT_KEYS = ("stop_rate", "list_rate", "heading_rate", "continuation_rate", "repetition_rate", "distinct_2",
               "tokens")


def summarize_arm(arm: str, arm_dir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """The arm's Likert summary (prompt-clustered CI), its judge-free format metrics and its training facts
    (none for an in-context arm: ``train_examples`` 0 and ``hyperparameters`` None)."""
    from lima_align.evaluate.format_metrics import model_metrics, read_output_rows
    from lima_align.evaluate.judging import read_rows
    from lima_align.evaluate.summary import summarize_group

    likert = summarize_group("likert", read_rows(results["judge"]["judgments"]))["likert"]
    metrics = model_metrics(read_output_rows(results["generate"]["outputs"]))
    trained = "train" in results
    summary = {"arm": arm, "likert": likert, "format": {k: metrics[k] for k in FORMAT_KEYS},
               "train_examples": results["mix"]["splits"]["train"] if trained else 0,
               "shortfalls": results["mix"]["shortfalls"] if trained else [],
               "test_prompts": results["generate"]["prompts"],
               "test_prompt_ids": results["generate"]["test_prompt_ids"],
               "steps": results["train"]["steps"] if trained else 0,
               "last_loss": results["train"]["last_loss"] if trained else None,
               "hyperparameters": results["train"]["hyperparameters"] if trained else None,
               "in_context": results.get("icl")}
    write_json(arm_dir / "arm-summary.json", summary)
    lo, hi = likert["ci"]
    return {**summary, "summary": f"mean {likert['mean']:.2f}, 95% CI [{lo:.2f}, {hi:.2f}], {likert['design']}"}


def run_arm(cfg: AblationConfig, arm: ArmConfig, judge: Any, log: Log) -> dict[str, Any]:
    arm_dir = Path(cfg.out) / "arms" / arm.name
    arm_dir.mkdir(parents=True, exist_ok=True)
    alog: Log = lambda m: log(f"  [{arm.name}] {m}")  # noqa: E731
    stages = Stages(arm_dir, alog, total=len(ICL_STAGES if arm.icl else ARM_STAGES))
    r: dict[str, Any] = {}
    if arm.icl:  # the untuned model in context: nothing to mix or train
        model, model_key = cfg.model, [cfg.model, "untuned"]
        r["icl"] = {"file": arm.icl, "model": cfg.model}
    else:
        r["mix"] = steps.mix(stages, mix_config(cfg, arm), arm_dir)
        r["train"] = steps.train(stages, train_config(cfg, arm_dir), alog)
        checkpoint = arm_dir / "train" / Path(r["train"]["checkpoint"]).name
        model, model_key = str(checkpoint), [r["train"]["key"], checkpoint.name]
    answers = arm_dir / "outputs" / f"{arm.name}.jsonl"
    job = GenerateJob(name=arm.name, model=model, model_key=model_key, prompts=test_prompts_path(cfg, arm_dir),
                      out=answers, sampling=cfg.sampling, samples=cfg.samples, limit=cfg.test_limit,
                      batch_size=cfg.gen_batch_size, device=cfg.device, engine=cfg.engine, icl=arm.icl,
                      missing_hint="set test_prompts, or give the mix recipes a test split")
    if arm.icl and not cfg.test_prompts:
        raise ConfigError(f"arm {arm.name!r}: an icl arm has no mix test split; set test_prompts")
    r["generate"] = steps.generate(stages, job)
    r["judge"] = steps.judge_likert(stages, judge, answers, arm_dir / "judgments" / "likert.jsonl",
                                    Path(cfg.out) / "judge-cache.sqlite")
    r["summary"] = stages.run("summary", lambda: summarize_arm(arm.name, arm_dir, r),
                              key={name: info["key"] for name, info in r.items() if "key" in info},
                              outputs=[arm_dir / "arm-summary.json"])
    return r


# --------------------------------------------------------------------------------------------- report
def render_markdown(cfg: AblationConfig, arms: list[dict[str, Any]], figures: list[str]) -> str:
    """The ablation table: each arm's mean with its prompt-clustered CI, and its difference from the first arm."""
    from lima_align.evaluate.format_metrics import percent_cell
    from lima_align.evaluate.statistics import compare_likert

    base = arms[0]["arm"] if arms else "-"
    lines = [f"# {cfg.name}: {cfg.title}", "",
             f"Base model `{cfg.model}`, identical training hyperparameters for every trained arm (an in-context "
             f"arm is the untuned model prompted with examples); {cfg.samples} samples "
             "per test prompt; Likert 1-6 helpfulness. Mean of the per-prompt means with a two-sided 95% Student-t "
             "CI over PROMPTS (a prompt's samples are averaged first: they are not independent). Difference from "
             f"the first arm ({base}): paired t over per-prompt differences when both arms answered the same "
             "prompts, Welch's t otherwise. Judge-free: stop rate (answers that ended before the token cap) and "
             "list rate in % with their 95% interval, median answer tokens.", "",
             f"| arm | train examples | test prompts | graded (prompts x samples) | unparsed | mean | "
             f"95% CI (t over prompts) | vs {base}: difference [95% CI] | final loss | stop rate | list rate | "
             "median tokens |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in arms:
        lk = a["likert"]
        loss = f"{a['last_loss']:.3f}" if a.get("last_loss") is not None else "-"
        d = compare_likert(lk, arms[0]["likert"])
        diff = "-" if a is arms[0] or d["diff"] != d["diff"] else (
            f"{d['diff']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}] ({d['ci_method']})")
        fmt = a.get("format") or {}
        tokens = (fmt.get("tokens") or {}).get("median")
        size = "in context" if a.get("in_context") else a["train_examples"]
        lines.append(f"| {a['arm']} | {size} | {a['test_prompts']} | "
                     f"{lk.get('design', lk['n'])} | {lk['missing']} | {lk['mean']:.2f} | "
                     f"[{lk['ci'][0]:.2f}, {lk['ci'][1]:.2f}] | {diff} | {loss} | "
                     f"{percent_cell(fmt.get('stop_rate'))} | {percent_cell(fmt.get('list_rate'))} | "
                     f"{'-' if tokens is None else f'{tokens:.0f}'} |")
    notes = [f"- {a['arm']}: {len(a['shortfalls'])} training input(s) could not give their n (shortfall)"
             for a in arms if a["shortfalls"]]
    if len({a["test_prompt_ids"] for a in arms}) > 1:
        notes.append("- the arms answered DIFFERENT test prompts: their means are not directly comparable")
    if notes:
        lines += ["", "Notes:", *notes]
    lines += ["", *[f"![{cfg.name}]({Path(f).name})" for f in figures if f.endswith(".png")]]
    return "\n".join(lines) + "\n"


def write_report(cfg: AblationConfig, arms: list[dict[str, Any]]) -> dict[str, Any]:
    """The plot, ``ablation-summary.json`` (with each arm's difference from the first arm) and ``.md``."""
    from lima_align.evaluate.statistics import compare_likert
    from lima_align.report.figures import likert_bars

    out = Path(cfg.out)
    rows = [{"label": a["arm"], **a["likert"]} for a in arms]
    figures = [str(p) for p in likert_bars(rows, out / "ablation-likert", f"{cfg.name}: {cfg.title}")]
    summary = {"name": cfg.name, "model": cfg.model, "samples": cfg.samples, "figures": figures,
               "hyperparameters": next((a["hyperparameters"] for a in arms if a["hyperparameters"]), {}),
               "arms": [{k: v for k, v in a.items() if k not in ("hyperparameters", "summary", "seconds")}
                        for a in arms],
               "differences": [{"arm": a["arm"], "vs": arms[0]["arm"], **compare_likert(a["likert"],
                                                                                       arms[0]["likert"])}
                               for a in arms[1:]]}
    write_json(out / "ablation-summary.json", summary)
    with atomic_write(out / "ablation-summary.md") as fh:
        fh.write(render_markdown(cfg, arms, figures))
    return summary


def run_ablation(cfg: AblationConfig, log: Log = print, *, only_arm: str | None = None) -> dict[str, Any]:
    """Run every arm (``parallel`` at a time; skipping completed stages), then the plot and the summary files.
    ``only_arm``: run that arm's stages and stop (what each parallel process does)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    judge = judge_config(cfg)
    if only_arm is not None:
        arm = next((a for a in cfg.arms if a.name == only_arm), None)
        if arm is None:
            raise LimaError(f"--arm {only_arm!r}: no such arm (arms: {', '.join(a.name for a in cfg.arms)})")
        return run_arm(cfg, arm, judge, log)["summary"]
    write_json(out / "ablation-config.json", to_dict(cfg))
    log(f"lima-align ablate {cfg.name}: {len(cfg.arms)} arm(s) -> {out.resolve()}")
    if cfg.curate_demo:
        curate_demo_candidates(Stages(out, log, total=len(demo_sources(DemoConfig()))), cfg)
    if cfg.parallel > 1 and len(cfg.arms) > 1:
        run_arms_in_processes(cfg, log)
    arms = []
    for i, arm in enumerate(cfg.arms, 1):  # after a parallel run: every stage is done, the markers are read
        log(f"arm {i}/{len(cfg.arms)}: {arm.name}")
        arms.append(run_arm(cfg, arm, judge, log)["summary"])
    hyper = {json.dumps(a["hyperparameters"], sort_keys=True) for a in arms if a["hyperparameters"] is not None}
    if len(hyper) > 1:
        raise LimaError("the arms' training hyperparameters differ (an arm ran with older settings?)")
    summary = write_report(cfg, arms)
    for a in arms:
        lk = a["likert"]
        log(f"  {a['arm']:<24} mean {lk['mean']:.2f}  95% CI [{lk['ci'][0]:.2f}, {lk['ci'][1]:.2f}]  {lk['design']}")
    log(f"plot: {', '.join(summary['figures'])}\nsummary: {out / 'ablation-summary.md'}")
    return summary
