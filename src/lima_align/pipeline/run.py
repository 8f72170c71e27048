"""``lima-align run RUN.yaml``: the whole LIMA pipeline as one resumable job in one run folder.

Stages, each writing files under ``<out>/``::

    curate-<source>   candidates/<source>.jsonl (+ .report.json)  one per source, as `lima-align curate`
    mix               mix/train.jsonl, train.dev.jsonl, train.test.jsonl, mix report
    train             train/checkpoint-*  (per-epoch checkpoints; resumes from the last complete one)
    select            select/  (dev answers of each checkpoint in the epoch window, judged; the best one wins)
    generate          outputs/<name>.jsonl  (answers to the test prompts; resumes row by row)
    judge             judgments/<name>-vs-<baseline>.jsonl  (pairwise, both orders; resumes row by row)
    report            report/  (HTML + figures + summary tables)

Each stage is a step of :mod:`lima_align.pipeline.steps` (the same steps ``demo`` and ``ablate`` run); its key
hashes its settings, the content of the files it reads and the keys of the stages it reads from: a re-run skips every stage whose key is unchanged, re-runs from scratch the ones whose
inputs or settings changed (and, through the keys, everything below them), and resumes a stage that was
interrupted half-way. Training is the exception: new data or training settings after checkpoints exist is an
error naming what changed, not a silent deletion of hours of work; ``--from STAGE`` forces a stage (and those
after it) to run again. Keys leave out what does not change a stage's result (the run folder's path, logging,
the judge's concurrency), so moving a run folder or turning TensorBoard on re-runs nothing.

Paths in the run config are relative to the working folder, except the mix recipe's input paths, which are
relative to the run folder (where ``candidates/`` is) unless ``mix_settings.base_dir`` says otherwise.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lima_align.config import ConfigError, from_dict, load_config, to_dict, yaml_with
from lima_align.errors import LimaError
from lima_align.fileio import write_json
from lima_align.generate.decoding import SamplingConfig
from lima_align.generate.engines import EngineOptions
from lima_align.pipeline import steps
from lima_align.pipeline.selection import SelectSpec
from lima_align.pipeline.stages import Stages
from lima_align.pipeline.steps import GenerateJob, Pairing, SourceSpec

Log = Callable[[str], None]
STAGES = ("curate", "mix", "train", "select", "generate", "judge", "report")
FOLDERS = {"mix": "mix", "train": "train", "select": "select", "generate": "outputs", "judge": "judgments",
           "report": "report"}  # what ``--from STAGE`` deletes


@dataclass
class BaselineSpec:
    """Answers of another model to the same test prompts (e.g. AlpacaEval's text_davinci_003_model_outputs)."""

    name: str = ""
    outputs: str = ""


@dataclass
class RunConfig:
    """A whole LIMA run; ``configs/runs/*.yaml`` override these defaults."""

    name: str = "lima"  # names the model's outputs (outputs/<name>.jsonl) and the report
    out: str = "runs/lima"
    sources: list[SourceSpec] = field(default_factory=list)
    mix: str = ""  # a mix recipe YAML (configs/mix/*.yaml)
    mix_settings: dict[str, Any] = field(default_factory=dict)  # MixConfig keys merged over the file's
    train: str = ""  # a training config YAML (configs/train/*.yaml)
    train_settings: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys merged over the file's
    train_launch: str = ""  # "": train in this process; else a launcher, e.g. "torchrun --nproc_per_node 8" or
    #                         "accelerate launch --config_file fsdp.yaml" (runs LAUNCH -m lima_align.train ...)
    select: SelectSpec = field(default_factory=SelectSpec)
    test_prompts: str = ""  # "" = the mix's test split
    test_limit: int = 0  # > 0: only the first N test prompts
    samples: int = 1  # answers per test prompt (the first is judged against the baselines)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # the paper's decoding by default
    gen_batch_size: int = 8
    engine: EngineOptions = field(default_factory=EngineOptions)  # hf, or vllm with its GPU options (select too)
    baselines: list[BaselineSpec] = field(default_factory=list)
    judge: str = ""  # a judge YAML (configs/judges/*.yaml), used by select and judge
    judge_settings: dict[str, Any] = field(default_factory=dict)
    judge_limit: int = 0  # > 0: judge only the first N pairs per baseline
    device: str | None = None  # generation / local judge device (None: cuda when available)

    def __post_init__(self) -> None:
        from lima_align.sources import SOURCES

        names = [s.name for s in self.sources]
        if not all(names) or len(set(names)) != len(names):
            raise ValueError(f"every source needs a unique name, got {names}")
        for label in [self.name, *names]:
            if not label.replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise ValueError(f"{label!r}: names become file names; use letters, digits, - _ . only")
        for s in self.sources:
            if s.command not in SOURCES:
                raise ValueError(f"source {s.name!r}: command must be one of {', '.join(SOURCES)}, "
                                 f"got {s.command!r}")
            if not s.paths:
                raise ValueError(f"source {s.name!r}: give its input paths")
        if not self.mix and not self.mix_settings:
            raise ValueError("give a mix recipe ('mix' and/or 'mix_settings')")
        base = [b.name for b in self.baselines]
        if not all(base) or len(set(base)) != len(base) or not all(b.outputs for b in self.baselines):
            raise ValueError(f"every baseline needs a unique name and an outputs file, got {base}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    return load_config(RunConfig, path, overrides)


# ------------------------------------------------------------------------------------------- resolving
def mix_config(cfg: RunConfig) -> Any:
    from lima_align.curate.mix import MixConfig

    values = yaml_with(cfg.mix, cfg.mix_settings)
    if not values.get("base_dir"):
        values["base_dir"] = cfg.out
    return from_dict(MixConfig, values, where=f"{cfg.mix or 'run config'} (mix)")


def train_config(cfg: RunConfig) -> Any:
    from lima_align.train.config import TrainConfig

    values = yaml_with(cfg.train, cfg.train_settings)
    for key in ("data", "out"):
        if key in cfg.train_settings:
            raise ConfigError(f"train_settings.{key} is set by the run (mix/train.jsonl, <out>/train)")
    values.update(data=str(Path(cfg.out) / "mix" / "train.jsonl"), out=str(Path(cfg.out) / "train"))
    if "keep_epochs" not in cfg.train_settings:  # keep the weights of every epoch the selection compares
        values["keep_epochs"] = cfg.select.epochs if cfg.select.enabled else "none"
    return from_dict(TrainConfig, values, where=f"{cfg.train or 'run config'} (train)")


def judge_config(cfg: RunConfig) -> Any:
    from lima_align.evaluate.judge_config import judge_from

    return judge_from(cfg.judge, cfg.judge_settings, cfg.device, where=f"{cfg.judge or 'run config'} (judge)")


def source_configs(cfg: RunConfig) -> list[Any]:
    """Every source's typed config, so that a bad option fails before any stage runs."""
    from lima_align.sources import source_config

    return [source_config(s.command, s.options, where=f"source {s.name!r}") for s in cfg.sources]


def check_inputs(cfg: RunConfig) -> None:
    """Every file the run config names (dumps, baselines, prompts), checked before hours of work start."""
    named = [(f"source {s.name!r}", p) for s in cfg.sources for p in s.paths]
    named += [(f"baseline {b.name!r}", b.outputs) for b in cfg.baselines]
    named += [(what, path) for what, path in (("test_prompts", cfg.test_prompts), ("select.dev", cfg.select.dev),
                                               ("mix", cfg.mix), ("train", cfg.train), ("judge", cfg.judge)) if path]
    missing = [f"{what}: {path}" for what, path in named if not Path(path).exists()]
    if missing:
        raise LimaError(f"the run config names files that do not exist (paths are relative to {Path.cwd()}): "
                        + "; ".join(missing))


def stage_names(cfg: RunConfig, first: str = "curate") -> list[str]:
    """The markers' names of the stages from ``first`` on (``curate`` is one stage per source)."""
    names = STAGES[STAGES.index(first):]
    return [f"curate-{s.name}" for s in cfg.sources if "curate" in names] + [n for n in names if n != "curate"]


# ------------------------------------------------------------------------------------------------ run
def run_pipeline(cfg: RunConfig, log: Log = print, *, rerun_from: str | None = None) -> dict[str, Any]:
    """Run every stage in order, skipping the ones already done with the same inputs and settings."""
    if rerun_from is not None and rerun_from not in STAGES:
        raise LimaError(f"--from: expected one of {', '.join(STAGES)}, got {rerun_from!r}")
    check_inputs(cfg)
    source_configs(cfg)
    out = Path(cfg.out)
    mix, train_cfg, judge = mix_config(cfg), train_config(cfg), judge_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "run-config.json", to_dict(cfg))
    stages = Stages(out, log, total=len(stage_names(cfg)))
    if rerun_from is not None:
        stages.forget(stage_names(cfg, rerun_from))
        for name in STAGES[STAGES.index(rerun_from):]:
            if name in FOLDERS and (out / FOLDERS[name]).exists():
                shutil.rmtree(out / FOLDERS[name])
    log(f"lima-align run {cfg.name}: {stages.total} stages -> {out.resolve()}")
    r: dict[str, Any] = {"curate": {s.name: steps.curate(stages, s, out) for s in cfg.sources}}
    r["mix"] = steps.mix(stages, mix, out)
    r["train"] = steps.train(stages, train_cfg, log, cfg.train_launch)
    r["select"] = steps.select(stages, cfg.select, judge, r["train"], out, cfg.sampling, cfg.device,
                               engine=cfg.engine)
    # paths recorded by an earlier run may spell another folder (a moved run): take names, rebuild under out
    checkpoint = out / "train" / Path(r["select"]["checkpoint"]).name
    answers = out / "outputs" / f"{cfg.name}.jsonl"
    job = GenerateJob(name=cfg.name, model=str(checkpoint), model_key=[r["select"]["key"], checkpoint.name],
                      prompts=Path(cfg.test_prompts) if cfg.test_prompts else out / "mix" / "train.test.jsonl",
                      out=answers, sampling=cfg.sampling, samples=cfg.samples, limit=cfg.test_limit,
                      batch_size=cfg.gen_batch_size, device=cfg.device, engine=cfg.engine,
                      missing_hint="set test_prompts, or give the mix a test split")
    r["generate"] = steps.generate(stages, job)
    pairings = [Pairing(b.name, answers, Path(b.outputs), out / "judgments" / f"{cfg.name}-vs-{b.name}.jsonl")
                for b in cfg.baselines]
    r["judge"] = steps.judge_pairs(stages, judge, pairings, out / "judge-cache.sqlite", limit=cfg.judge_limit)
    r["report"] = steps.report(stages, [p.out for p in pairings], out / "report", f"lima-align run {cfg.name}",
                               outputs=[answers, *(p.baseline for p in pairings)])
    write_json(out / "run-summary.json", r)
    log(f"done: checkpoint {checkpoint}; answers {answers}; report {r['report'].get('report') and out / 'report'}")
    return r


def stage_status(cfg: RunConfig) -> list[tuple[str, str]]:
    """``(stage, state)`` of every stage of this run, from its run folder's markers, without running anything."""
    return Stages(Path(cfg.out)).status(stage_names(cfg))
