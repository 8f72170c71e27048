"""``lima-align run RECIPE.yaml``: the whole LIMA pipeline as one resumable job in one run folder.

Stages, each writing files under ``<out>/``::

    curate-<source>   candidates/<source>.jsonl (+ .report.json)  one per source, `lima-align curate <command>`
    mix               mix/train.jsonl, train.dev.jsonl, train.test.jsonl, mix report
    train             train/checkpoint-*  (per-epoch checkpoints; resumes from the last complete one)
    select            select/  (dev answers of each checkpoint in the epoch window, judged; the best one wins)
    generate          outputs/<name>.jsonl  (answers to the test prompts; resumes row by row)
    judge             judgments/<name>-vs-<baseline>.jsonl  (pairwise, both orders; resumes row by row)
    report            report/  (HTML + figures + summary tables)

Each stage's key (:mod:`lima_align.pipeline.stages`) hashes its settings, the content of the files it reads and the keys of
the stages it reads from: a re-run skips every stage whose key is unchanged, re-runs from scratch the ones whose
inputs or settings changed (and, through the keys, everything below them), and resumes a stage that was
interrupted half-way. Training is the exception: new data or training settings after checkpoints exist is an
error naming what changed, not a silent deletion of hours of work; ``--from STAGE`` forces a stage (and those
after it) to run again. Keys leave out what does not change a stage's result (the run folder's path, logging,
the judge's concurrency), so moving a run folder or turning TensorBoard on re-runs nothing.

Paths in the recipe are relative to the working folder, except the mix recipe's input paths, which are relative
to the run folder (where ``candidates/`` is) unless ``mix_settings.base_dir`` says otherwise.
"""

from __future__ import annotations

import contextlib
import gc
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lima_align.config import ConfigError, from_dict, to_dict, yaml_with
from lima_align.errors import LimaError
from lima_align.fileio import write_json
from lima_align.generate.decoding import SamplingConfig
from lima_align.pipeline.stages import Stages

Log = Callable[[str], None]
CURATE_COMMANDS = ("stackexchange", "wikihow", "reddit", "natural-instructions", "authored", "dialogue")
STAGES = ("curate", "mix", "train", "select", "generate", "judge", "report")


@dataclass
class SourceSpec:
    """One ``lima-align curate <command>`` run: its inputs and its command-line options without the dashes."""

    name: str = ""  # the candidates file: candidates/<name>.jsonl (mix recipes refer to it)
    command: str = ""  # stackexchange | wikihow | reddit | natural-instructions | authored | dialogue
    paths: list[str] = field(default_factory=list)  # dumps / files / folders, relative to the working folder
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {min-score: 10, workers: 4}; true = a flag


@dataclass
class SelectSpec:
    """Checkpoint selection on the dev prompts (the paper: epochs 5-10, by a judge, never by loss)."""

    enabled: bool = True  # false: use the last checkpoint
    dev: str = ""  # dev prompts ("" = the mix's dev split)
    epochs: str = "5-10"
    method: str = "likert"  # likert | pairwise
    max_new_tokens: int = 512
    limit: int = 0  # > 0: judge only the first N dev prompts


@dataclass
class BaselineSpec:
    """Answers of another model to the same test prompts (e.g. AlpacaEval's text_davinci_003_model_outputs)."""

    name: str = ""
    outputs: str = ""


@dataclass
class RecipeConfig:
    """A whole LIMA run; ``configs/runs/*.yaml`` override these defaults."""

    name: str = "lima"  # names the model's outputs (outputs/<name>.jsonl) and the report
    out: str = "runs/lima"
    sources: list[SourceSpec] = field(default_factory=list)
    mix: str = ""  # a mix recipe YAML (configs/mix/*.yaml)
    mix_settings: dict[str, Any] = field(default_factory=dict)  # MixConfig keys merged over the file's
    train: str = ""  # a training config YAML (configs/lima*.yaml)
    train_settings: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys merged over the file's
    train_launch: str = ""  # "": train in this process; else a launcher, e.g. "torchrun --nproc_per_node 8" or
    #                         "accelerate launch --config_file fsdp.yaml" (runs LAUNCH -m lima_align.train ...)
    select: SelectSpec = field(default_factory=SelectSpec)
    test_prompts: str = ""  # "" = the mix's test split
    test_limit: int = 0  # > 0: only the first N test prompts
    samples: int = 1  # answers per test prompt (the first is judged against the baselines)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # the paper's decoding by default
    gen_batch_size: int = 8
    baselines: list[BaselineSpec] = field(default_factory=list)
    judge: str = ""  # a judge YAML (configs/judges/*.yaml), used by select and judge
    judge_settings: dict[str, Any] = field(default_factory=dict)
    judge_limit: int = 0  # > 0: judge only the first N pairs per baseline
    device: str | None = None  # generation / local judge device (None: cuda when available)

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources]
        if not all(names) or len(set(names)) != len(names):
            raise ValueError(f"every source needs a unique name, got {names}")
        for label in [self.name, *names]:
            if not label.replace("-", "").replace("_", "").replace(".", "").isalnum() or label == "test-prompts":
                raise ValueError(f"{label!r}: names become file names; use letters, digits, - _ . only "
                                 "(and not 'test-prompts')")
        for s in self.sources:
            if s.command not in CURATE_COMMANDS:
                raise ValueError(f"source {s.name!r}: command must be one of {', '.join(CURATE_COMMANDS)}, "
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
        if self.select.method not in ("likert", "pairwise"):
            raise ValueError(f"select.method must be likert or pairwise, got {self.select.method!r}")


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
    from lima_align.config import load_config

    return load_config(RecipeConfig, path, overrides)


# ------------------------------------------------------------------------------------------- resolving
def curate_argv(spec: SourceSpec, out: Path) -> list[str]:
    """The ``lima-align curate`` arguments of a source (options: ``key: value``, ``true`` = flag, lists repeat)."""
    argv = [spec.command, *spec.paths, "--out", str(out / "candidates" / f"{spec.name}.jsonl"),
            "--report", str(out / "candidates" / f"{spec.name}.report.json")]
    for key, value in spec.options.items():
        if key in ("out", "report"):
            raise ConfigError(f"source {spec.name!r}: '{key}' is set by the run (candidates/{spec.name}.*)")
        flag = "--" + key.replace("_", "-")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is True:
                argv.append(flag)
            elif v is not False and v is not None:
                argv += [flag, str(v)]
    return argv


def mix_config(cfg: RecipeConfig) -> Any:
    from lima_align.curate.mix import MixConfig

    values = yaml_with(cfg.mix, cfg.mix_settings)
    if not values.get("base_dir"):
        values["base_dir"] = cfg.out
    return from_dict(MixConfig, values, where=f"{cfg.mix or 'recipe'} (mix)")


def mix_inputs(mix: Any) -> list[Path]:
    """Every file the mix reads (training, dev and test inputs), resolved like the mix resolves them."""
    paths = []
    for spec in [*mix.inputs, *mix.dev, *mix.test]:
        p = Path(spec.path)
        paths.append(p if p.is_absolute() or not mix.base_dir else Path(mix.base_dir) / p)
    return paths


def train_config(cfg: RecipeConfig) -> Any:
    from lima_align.train.config import TrainConfig

    values = yaml_with(cfg.train, cfg.train_settings)
    for key in ("data", "out"):
        if key in cfg.train_settings:
            raise ConfigError(f"train_settings.{key} is set by the run (mix/train.jsonl, <out>/train)")
    values.update(data=str(Path(cfg.out) / "mix" / "train.jsonl"), out=str(Path(cfg.out) / "train"))
    return from_dict(TrainConfig, values, where=f"{cfg.train or 'recipe'} (train)")


def judge_config(cfg: RecipeConfig) -> Any:
    from lima_align.evaluate.judge_config import judge_from

    return judge_from(cfg.judge, cfg.judge_settings, cfg.device, where=f"{cfg.judge or 'recipe'} (judge)")


# Training settings that do not change the trained weights (or are set by the run): not part of its key
TRAIN_NOT_IN_KEY = ("data", "out", "tensorboard", "logging_steps", "save_total_limit", "anomaly", "spike_factor",
                    "loss_chunk", "gradient_checkpointing")


def train_identity(train_cfg: Any) -> dict[str, Any]:
    return {k: v for k, v in to_dict(train_cfg).items() if k not in TRAIN_NOT_IN_KEY}


def _option_paths(spec: SourceSpec) -> list[str]:
    """Option values that name existing files (an index CSV, a site table): their content is an input too."""
    values = [v for value in spec.options.values() for v in (value if isinstance(value, list) else [value])]
    return [v for v in values if isinstance(v, str) and Path(v).exists()]


# ---------------------------------------------------------------------------------------------- stages
def run_curate(spec: SourceSpec, out: Path, log: Log) -> dict[str, Any]:
    """One source through the ``lima-align curate`` command itself (same options, checks and audit report)."""
    from lima_align.cli import build_parser

    argv = ["curate", *curate_argv(spec, out)]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = build_parser().parse_args(argv)
    except SystemExit:
        said = errors.getvalue().strip().splitlines() or ["invalid options"]
        raise ConfigError(f"source {spec.name!r}: {said[-1]}") from None
    log(f"  lima-align {' '.join(argv)}")
    code = int(args.func(args) or 0)
    path = out / "candidates" / f"{spec.name}.jsonl"
    if code != 0 or not path.is_file():
        raise LimaError(f"source {spec.name!r}: curate {spec.command} kept no example (see "
                        f"{out / 'candidates' / (spec.name + '.report.json')})")
    n = sum(1 for line in path.open(encoding="utf-8") if line.strip())
    return {"candidates": str(path), "examples": n, "summary": f"{n} candidates -> {path}"}


def run_mix(out: Path, mix: Any) -> dict[str, Any]:
    from lima_align.curate.mix import build_mix, check_recipe, write_mix

    check_recipe(mix)
    result = build_mix(mix)
    report = write_mix(result, mix, out / "mix" / "train.jsonl")
    sizes = {split: len(rows) for split, rows in result.splits.items()}
    short = report.get("shortfalls") or []
    return {"splits": sizes, "shortfalls": short,
            "summary": ", ".join(f"{k} {v}" for k, v in sizes.items()) + (f"; {len(short)} SHORTFALL(S)" if short
                                                                           else "")}


def run_train(out: Path, train_cfg: Any, log: Log, launch: str = "") -> dict[str, Any]:
    """Train in this process, or with ``launch`` (e.g. ``torchrun --nproc_per_node 8``) as
    ``LAUNCH -m lima_align.train <out>/train-config.yaml``; either way resuming from the last complete checkpoint."""
    from lima_align.train.checkpoint import complete_checkpoints
    from lima_align.train.run import train

    resume = (out / "train").is_dir()
    if launch:
        history = _launch_training(out, train_cfg, log, launch, resume)
        checkpoints, steps = complete_checkpoints(out / "train"), (history[-1].get("step", 0) if history else 0)
    else:
        result = train(train_cfg, resume=resume, log=lambda m: log("  " + m))
        if result.interrupted:
            raise LimaError(f"training stopped by SIGTERM at step {result.global_step}; run again to resume")
        history, checkpoints, steps = result.log_history, result.checkpoints, result.global_step
    if not checkpoints:
        raise LimaError(f"training wrote no complete checkpoint in {out / 'train'}")
    losses = [h["loss"] for h in history if "loss" in h]
    gc.collect()
    return {"checkpoints": [str(c) for c in checkpoints], "checkpoint": str(checkpoints[-1]),
            "steps": steps, "last_loss": losses[-1] if losses else None,
            "summary": f"{steps} steps, {len(checkpoints)} checkpoint(s)"
                       + (f", loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "")}


def _launch_training(out: Path, train_cfg: Any, log: Log, launch: str, resume: bool) -> list[dict[str, Any]]:
    """Run the training module under a launcher; returns the last checkpoint's log history."""
    import json
    import shlex
    import subprocess

    from lima_align.config import dump_yaml
    from lima_align.fileio import atomic_write
    from lima_align.train.checkpoint import complete_checkpoints

    config = out / "train-config.yaml"
    with atomic_write(config) as fh:
        fh.write(dump_yaml(train_cfg))
    cmd = [*shlex.split(launch), "-m", "lima_align.train", str(config), *(["--resume"] if resume else [])]
    log(f"  {' '.join(cmd)}")
    code = subprocess.run(cmd).returncode
    if code != 0:
        raise LimaError(f"training under '{launch}' exited with code {code}; run again to resume")
    checkpoints = complete_checkpoints(out / "train")
    state = checkpoints[-1] / "trainer_state.json" if checkpoints else None
    return json.loads(state.read_text(encoding="utf-8"))["log_history"] if state and state.is_file() else []


def dev_prompts(cfg: RecipeConfig) -> Path:
    return Path(cfg.select.dev) if cfg.select.dev else Path(cfg.out) / "mix" / "train.dev.jsonl"


def run_select(cfg: RecipeConfig, judge: Any, train_info: dict[str, Any]) -> dict[str, Any]:
    from lima_align.evaluate.judging import JudgeSetup
    from lima_align.pipeline.selection import SelectOptions, parse_epochs, select_checkpoint

    out = Path(cfg.out)
    if not cfg.select.enabled:
        last = out / "train" / Path(train_info["checkpoint"]).name
        return {"checkpoint": str(last), "method": "last checkpoint", "summary": f"selection off: {last}"}
    dev = dev_prompts(cfg)
    if not dev.is_file() or not dev.read_text(encoding="utf-8").strip():
        raise LimaError(f"checkpoint selection needs dev prompts: {dev} is missing or empty (give the mix a dev "
                        "split, set select.dev, or select.enabled=false)")
    options = SelectOptions(epochs=parse_epochs(cfg.select.epochs), method=cfg.select.method,
                            max_new_tokens=cfg.select.max_new_tokens, device=cfg.device,
                            limit=cfg.select.limit or None)
    result = select_checkpoint(out / "train", dev, JudgeSetup(judge, cache_path=out / "judge-cache.sqlite"),
                               options, out / "select")
    gc.collect()
    return {"checkpoint": result["checkpoint"], "best": result["best"], "method": result["method"],
            "scores": {k: v["score"] for k, v in result["scores"].items()},
            "summary": f"{result['best']} by {result['method']} -> {result['checkpoint']}"}


def test_prompts(cfg: RecipeConfig) -> Path:
    """The test prompts the model answers (the first ``test_limit`` when set), copied into the run folder."""
    from lima_align.generate.batch import copy_prompts

    source = Path(cfg.test_prompts) if cfg.test_prompts else Path(cfg.out) / "mix" / "train.test.jsonl"
    return copy_prompts(source, Path(cfg.out) / "outputs" / "test-prompts.jsonl", cfg.test_limit,
                        missing_hint="set test_prompts, or give the mix a test split")


def run_generate(cfg: RecipeConfig, checkpoint: str) -> dict[str, Any]:
    from lima_align.generate.batch import generate_file
    from lima_align.generate.engine import HFEngine
    from lima_align.generate.loading import load_for_generation

    prompts = test_prompts(cfg)
    lm, tokenizer, fmt = load_for_generation(checkpoint, device=cfg.device)
    engine = HFEngine(lm, tokenizer, fmt, batch_size=cfg.gen_batch_size)
    path = Path(cfg.out) / "outputs" / f"{cfg.name}.jsonl"
    report = generate_file(engine, prompts, path, cfg.sampling, samples=cfg.samples, generator=cfg.name)
    del lm, engine
    gc.collect()
    return {"outputs": str(path), **report.to_dict(),
            "summary": f"{report.prompts} prompts x {cfg.samples} sample(s), {report.generated_tokens} tokens "
                       f"-> {path}"}


def run_judge(cfg: RecipeConfig, judge: Any, outputs: str) -> dict[str, Any]:
    from lima_align.evaluate.judging import JudgeSetup, judge_pairwise

    out = Path(cfg.out)
    setup = JudgeSetup(judge, cache_path=out / "judge-cache.sqlite")
    files, results = [], {}
    for baseline in cfg.baselines:
        path = out / "judgments" / f"{cfg.name}-vs-{baseline.name}.jsonl"
        report, pairing = judge_pairwise(setup, outputs, baseline.outputs, path, limit=cfg.judge_limit or None)
        files.append(str(path))
        results[baseline.name] = {**pairing, "missing": report.missing, "tasks": report.tasks}
    return {"judgments": files, "baselines": results,
            "summary": "; ".join(f"vs {k}: {v['paired']} pairs ({v['missing']} unparsed)" for k, v in results.items())
            or "no baselines: nothing judged"}


def run_report(cfg: RecipeConfig, judgments: list[str]) -> dict[str, Any]:
    from lima_align.report.build import build_report

    if not judgments:
        return {"report": None, "summary": "no judgments: no report (add baselines to the recipe)"}
    paths = build_report(judgments, Path(cfg.out) / "report", title=f"lima-align run {cfg.name}")
    html = next((str(p) for p in paths if str(p).endswith(".html")), str(Path(cfg.out) / "report"))
    return {"report": html, "files": [str(p) for p in paths], "summary": html}


# ------------------------------------------------------------------------------------------------ run
def check_inputs(cfg: RecipeConfig) -> None:
    """Every file the recipe names (dumps, baselines, prompts), checked before hours of work start."""
    named = [(f"source {s.name!r}", p) for s in cfg.sources for p in s.paths]
    named += [(f"baseline {b.name!r}", b.outputs) for b in cfg.baselines]
    named += [(what, path) for what, path in (("test_prompts", cfg.test_prompts), ("select.dev", cfg.select.dev),
                                               ("mix", cfg.mix), ("train", cfg.train), ("judge", cfg.judge)) if path]
    missing = [f"{what}: {path}" for what, path in named if not Path(path).exists()]
    if missing:
        raise LimaError(f"the recipe names files that do not exist (paths are relative to {Path.cwd()}): "
                        + "; ".join(missing))


def run_pipeline(cfg: RecipeConfig, log: Log = print, *, rerun_from: str | None = None) -> dict[str, Any]:
    """Run every stage in order, skipping the ones already done with the same inputs and settings."""
    if rerun_from is not None and rerun_from not in STAGES:
        raise LimaError(f"--from: expected one of {', '.join(STAGES)}, got {rerun_from!r}")
    check_inputs(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "recipe.json", to_dict(cfg))
    mix, train_cfg, judge = mix_config(cfg), train_config(cfg), judge_config(cfg)
    if rerun_from is not None:
        _forget(out, STAGES[STAGES.index(rerun_from):], cfg)
    stages = Stages(out, log)
    digest = stages.digest
    total = len(cfg.sources) + len(STAGES) - 1
    log(f"lima-align run {cfg.name}: {total} stages -> {out.resolve()}")
    r: dict[str, Any] = {"curate": {}}
    for spec in cfg.sources:
        key = {"spec": to_dict(spec), "inputs": [digest(p) for p in [*spec.paths, *_option_paths(spec)]]}
        r["curate"][spec.name] = stages.run(
            f"curate-{spec.name}", total, lambda spec=spec: run_curate(spec, out, log), key=key,
            outputs=[out / "candidates" / f"{spec.name}.jsonl", out / "candidates" / f"{spec.name}.report.json"])
    mix_key = {"mix": {k: v for k, v in to_dict(mix).items() if k != "base_dir"},
               "inputs": [digest(p) for p in mix_inputs(mix)]}
    r["mix"] = stages.run("mix", total, lambda: run_mix(out, mix), key=mix_key, outputs=[out / "mix"])
    train_key = {"train": train_identity(train_cfg), "data": digest(out / "mix" / "train.jsonl")}
    r["train"] = stages.run("train", total, lambda: run_train(out, train_cfg, log, cfg.train_launch), key=train_key,
                            outputs=[out / "train"],
                            protect="run with --from train to train again (the checkpoints in "
                                    f"{out / 'train'} are deleted then), or give the run a new 'out'")
    select_key = {"select": to_dict(cfg.select), "judge": judge.identity(), "train": r["train"]["key"],
                  "dev": digest(dev_prompts(cfg)) if cfg.select.enabled else None}
    r["select"] = stages.run("select", total, lambda: run_select(cfg, judge, r["train"]), key=select_key,
                             outputs=[out / "select"] if cfg.select.enabled else [])
    # paths recorded by an earlier run may spell another folder (a moved run): take names, rebuild under out
    checkpoint = out / "train" / Path(r["select"]["checkpoint"]).name
    prompts = Path(cfg.test_prompts) if cfg.test_prompts else out / "mix" / "train.test.jsonl"
    gen_key = {"checkpoint": [r["select"]["key"], checkpoint.name],
               "sampling": to_dict(cfg.sampling), "samples": cfg.samples, "prompts": digest(prompts),
               "limit": cfg.test_limit, "name": cfg.name}
    r["generate"] = stages.run("generate", total, lambda: run_generate(cfg, str(checkpoint)),
                               key=gen_key, outputs=[out / "outputs"])
    judge_key = {"judge": judge.identity(), "outputs": r["generate"]["key"], "limit": cfg.judge_limit,
                 "baselines": {b.name: digest(b.outputs) for b in cfg.baselines}}
    answers = out / "outputs" / f"{cfg.name}.jsonl"
    r["judge"] = stages.run("judge", total, lambda: run_judge(cfg, judge, str(answers)), key=judge_key,
                            outputs=[out / "judgments"] if cfg.baselines else [])
    judgments = [str(out / "judgments" / f"{cfg.name}-vs-{b.name}.jsonl") for b in cfg.baselines]
    r["report"] = stages.run("report", total, lambda: run_report(cfg, judgments),
                             key={"judge": r["judge"]["key"]}, outputs=[out / "report"] if cfg.baselines else [])
    write_json(out / "run-summary.json", r)
    log(f"done: checkpoint {checkpoint}; answers {answers}; report {r['report'].get('report') and out / 'report'}")
    return r


def stage_status(cfg: RecipeConfig) -> list[tuple[str, str]]:
    """``(stage, state)`` from the run folder's markers, without running anything: "done in N s: summary",
    "interrupted (resumes)", or "not run". A changed recipe may still redo a done stage (its key is checked on run)."""
    import json

    names = [f"curate-{s.name}" for s in cfg.sources] + list(STAGES[1:])
    folder = Path(cfg.out) / "stages"
    rows = []
    for name in names:
        marker, started = folder / f"{name}.json", folder / f"{name}.started.json"
        if marker.is_file():
            info = json.loads(marker.read_text(encoding="utf-8"))
            rows.append((name, f"done in {info.get('seconds', '?')} s: {info.get('summary', '')}"))
        elif started.is_file():
            rows.append((name, "interrupted (a run resumes it)"))
        else:
            rows.append((name, "not run"))
    return rows


def _forget(out: Path, names: tuple[str, ...], cfg: RecipeConfig) -> None:
    """Drop the markers of these stages (``--from``) so they run again; their outputs are redone from scratch."""
    expanded = [f"curate-{s.name}" for s in cfg.sources] if "curate" in names else []
    for name in [*expanded, *names]:
        for suffix in (".json", ".started.json"):
            (out / "stages" / f"{name}{suffix}").unlink(missing_ok=True)
    folders = {"mix": "mix", "train": "train", "select": "select", "generate": "outputs", "judge": "judgments",
               "report": "report"}
    for name in names:
        if name in folders and (out / folders[name]).exists():
            shutil.rmtree(out / folders[name])
