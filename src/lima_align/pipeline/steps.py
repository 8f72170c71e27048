"""The stage steps of every long job, each written once: ``run``, ``demo`` and ``ablate`` all call these.

A step takes the job's :class:`~lima_align.pipeline.stages.Stages` and a typed description of its work. It derives
the stage's key - its settings, the content of the files it reads (cached digests) and, where it reads another
stage's result, that stage's key - and runs the work unless an earlier run finished it with the same key. It
returns what it wrote: a JSON-able summary holding the paths, recorded in the stage's marker.

Every step loads what it needs (a model, a judge) and frees it before returning, so one process can run the whole
job on one device.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lima_align.config import to_dict
from lima_align.errors import LimaError
from lima_align.generate.decoding import SamplingConfig
from lima_align.generate.engines import EngineOptions
from lima_align.pipeline.stages import Stages, fingerprint

Log = Callable[[str], None]

# Training settings that do not change the trained weights (or are set per run): not part of its key
# (``strategy``: DDP, FSDP2 and ZeRO-3 train the same weights within fp32 round-off; ``keep_epochs``: which
# checkpoints stay on disk)
TRAIN_NOT_IN_KEY = ("data", "out", "tensorboard", "logging_steps", "save_total_limit", "anomaly", "spike_factor",
                    "loss_chunk", "gradient_checkpointing", "strategy", "keep_epochs")
PER_RUN = ("data", "out")  # TrainConfig fields that differ between runs of the same hyperparameters


@dataclass
class SourceSpec:
    """One source to curate: its command, inputs and options (the command's option names, as in a recipe)."""

    name: str = ""  # the candidates file: candidates/<name>.jsonl (mix recipes refer to it)
    command: str = ""  # stackexchange | wikihow | reddit | natural-instructions | authored | dialogue
    paths: list[str] = field(default_factory=list)  # dumps / files / folders, relative to the working folder
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {min-score: 10, workers: 4}


@dataclass
class GenerateJob:
    """Answers of one model to a prompts file (``samples`` per prompt), written to ``out`` (resumes row by row)."""

    name: str  # the generator's name in every row
    model: str  # a checkpoint folder or a model name
    model_key: Any  # what identifies the model in the stage key: the key of the stage that made it, or its name
    prompts: Path  # the prompts file (its first ``limit`` prompts are copied beside the answers and answered)
    out: Path
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    samples: int = 1
    limit: int = 0
    batch_size: int = 8
    device: str | None = None
    add_eot: bool = False  # a model not tuned by lima-align (a base model before tuning): add the EOT token
    missing_hint: str = ""  # said when the prompts file does not exist
    engine: EngineOptions = field(default_factory=EngineOptions)
    icl: str = ""  # an in-context prompt file (configs/icl/*.yaml): an untuned model answers in context

    @property
    def prompts_copy(self) -> Path:
        return self.out.with_name(f"{self.out.stem}.prompts.jsonl")


@dataclass
class ReferenceJob:
    """The per-token loss of one model on held-out reference answers (a file of prompt + answer conversations)."""

    name: str
    model: str  # a checkpoint folder or a model name
    model_key: Any  # as in GenerateJob
    references: Path
    out: Path  # JSON: each reference's loss and the summary
    device: str | None = None
    add_eot: bool = False


@dataclass
class Pairing:
    """One pairwise comparison: ``answers`` against ``baseline`` (both orders), judgments into ``out``."""

    name: str
    answers: Path
    baseline: Path
    out: Path


# -------------------------------------------------------------------------------------------- curate
def option_paths(spec: SourceSpec) -> list[str]:
    """Option values that name existing files (an index CSV, a site table): their content is an input too."""
    values = [v for value in spec.options.values() for v in (value if isinstance(value, list) else [value])]
    return [v for v in values if isinstance(v, str) and Path(v).exists()]


def curate(stages: Stages, spec: SourceSpec, folder: Path) -> dict[str, Any]:
    """``candidates/<name>.jsonl`` and its audit report from one source, by the source's own code."""
    from lima_align.sources import NothingKept, curate_to_files, source_config

    config = source_config(spec.command, spec.options, where=f"source {spec.name!r}")
    out = folder / "candidates" / f"{spec.name}.jsonl"
    report = out.with_suffix(".report.json")

    def work() -> dict[str, Any]:
        try:
            result = curate_to_files(spec.command, spec.paths, config, out, report)
        except NothingKept as exc:
            raise LimaError(f"source {spec.name!r}: {exc}") from None
        n = len(result.examples)
        return {"candidates": str(out), "examples": n, "summary": f"{n} candidates -> {out}"}

    key = {"spec": to_dict(spec), "inputs": [stages.digest(p) for p in [*spec.paths, *option_paths(spec)]]}
    return stages.run(f"curate-{spec.name}", work, key=key, outputs=[out, report])


# ----------------------------------------------------------------------------------------------- mix
def mix_inputs(mix: Any) -> list[Path]:
    """Every file a mix reads (training, dev and test inputs), resolved like the mix resolves them."""
    paths = []
    for spec in [*mix.inputs, *mix.dev, *mix.test]:
        p = Path(spec.path)
        paths.append(p if p.is_absolute() or not mix.base_dir else Path(mix.base_dir) / p)
    return paths


def mix(stages: Stages, mix_cfg: Any, folder: Path) -> dict[str, Any]:
    """``<folder>/mix/train.jsonl`` (+ dev and test splits and the mix report) from a MixConfig."""
    from lima_align.curate.mix import build_mix, check_recipe, scoring_identity, write_mix

    def work() -> dict[str, Any]:
        check_recipe(mix_cfg)
        result = build_mix(mix_cfg, log=stages.log)
        report = write_mix(result, mix_cfg, folder / "mix" / "train.jsonl")
        sizes = {split: len(rows) for split, rows in result.splits.items()}
        short = report.get("shortfalls") or []
        return {"splits": sizes, "shortfalls": short,
                "summary": ", ".join(f"{k} {v}" for k, v in sizes.items())
                + (f"; {len(short)} SHORTFALL(S)" if short else "")}

    key = {"mix": {k: v for k, v in to_dict(mix_cfg).items() if k != "base_dir"},
           "inputs": [stages.digest(p) for p in mix_inputs(mix_cfg)]}
    scored_by = scoring_identity(mix_cfg)
    if scored_by:  # who scored: absent from an unscored mix's key
        key["scored_by"] = scored_by
    return stages.run("mix", work, key=key, outputs=[folder / "mix"])


# --------------------------------------------------------------------------------------------- train
def hyperparameters(train_cfg: Any) -> dict[str, Any]:
    """Everything of a TrainConfig but its data and output folder (what two arms of an ablation share)."""
    return {k: v for k, v in to_dict(train_cfg).items() if k not in PER_RUN}


def train_identity(train_cfg: Any) -> dict[str, Any]:
    """The training settings that decide the trained weights: the train stage's key (with the data's digest)."""
    return {k: v for k, v in to_dict(train_cfg).items() if k not in TRAIN_NOT_IN_KEY}


def train(stages: Stages, train_cfg: Any, log: Log, launch: str = "") -> dict[str, Any]:
    """Fine-tune ``train_cfg.model`` into ``train_cfg.out``, in this process or under ``launch`` (e.g. ``torchrun
    --nproc_per_node 8``); resumes from the last complete checkpoint. A changed key with checkpoints on disk is an
    error naming what changed, never a silent deletion of hours of training."""
    out = Path(train_cfg.out)
    key = {"train": train_identity(train_cfg), "data": stages.digest(train_cfg.data)}
    return stages.run("train", lambda: _train(train_cfg, log, launch), key=key, outputs=[out],
                      protect="run with --from train to train again (the checkpoints in "
                              f"{out} are deleted then), or give the run a new 'out'")


def _train(train_cfg: Any, log: Log, launch: str) -> dict[str, Any]:
    from lima_align.train.checkpoint import complete_checkpoints
    from lima_align.train.run import train as run_training

    out = Path(train_cfg.out)
    resume = out.is_dir()
    if launch:
        history = _launch_training(train_cfg, log, launch, resume)
        checkpoints, steps = complete_checkpoints(out), (history[-1].get("step", 0) if history else 0)
    else:
        result = run_training(train_cfg, resume=resume, log=lambda m: log("  " + m))
        if result.interrupted:
            raise LimaError(f"training stopped by SIGTERM at step {result.global_step}; run again to resume")
        history, checkpoints, steps = result.log_history, result.checkpoints, result.global_step
    if not checkpoints:
        raise LimaError(f"training wrote no complete checkpoint in {out}")
    losses = [h["loss"] for h in history if "loss" in h]
    gc.collect()
    return {"checkpoints": [str(c) for c in checkpoints], "checkpoint": str(checkpoints[-1]), "steps": steps,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "hyperparameters": hyperparameters(train_cfg),
            "summary": f"{steps} steps, {len(checkpoints)} checkpoint(s)"
                       + (f", loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "")}


def _launch_training(train_cfg: Any, log: Log, launch: str, resume: bool) -> list[dict[str, Any]]:
    """Run ``LAUNCH -m lima_align.train <config>``; returns the last complete checkpoint's log history."""
    import shlex
    import subprocess

    from lima_align.config import dump_yaml
    from lima_align.fileio import atomic_write
    from lima_align.train.checkpoint import complete_checkpoints

    config = Path(train_cfg.out).parent / "train-config.yaml"
    with atomic_write(config) as fh:
        fh.write(dump_yaml(train_cfg))
    cmd = [*shlex.split(launch), "-m", "lima_align.train", str(config), *(["--resume"] if resume else [])]
    log(f"  {' '.join(cmd)}")
    code = subprocess.run(cmd).returncode
    if code != 0:
        raise LimaError(f"training under '{launch}' exited with code {code}; run again to resume")
    checkpoints = complete_checkpoints(train_cfg.out)
    state = checkpoints[-1] / "trainer_state.json" if checkpoints else None
    return json.loads(state.read_text(encoding="utf-8"))["log_history"] if state and state.is_file() else []


# ------------------------------------------------------------------------------------------ generate
def generate(stages: Stages, job: GenerateJob, stage: str = "generate") -> dict[str, Any]:
    """The job's answers; the prompts answered are copied beside them (``<out>.prompts.jsonl``)."""
    from lima_align.generate.batch import answer_prompts, copy_prompts

    def work() -> dict[str, Any]:
        prompts = copy_prompts(job.prompts, job.prompts_copy, job.limit, missing_hint=job.missing_hint)
        report = answer_prompts(job.model, prompts, job.out, job.sampling, samples=job.samples, generator=job.name,
                                batch_size=job.batch_size, device=job.device, add_eot=job.add_eot,
                                engine=job.engine, icl=job.icl or None)
        ids = sorted({json.loads(line)["id"] for line in job.out.read_text(encoding="utf-8").splitlines() if line})
        return {"outputs": str(job.out), **report.to_dict(), "test_prompt_ids": fingerprint(ids),
                "summary": f"{report.prompts} prompts x {job.samples} sample(s), {report.generated_tokens} tokens "
                           f"-> {job.out}"}

    key = {"model": job.model_key, "name": job.name, "sampling": to_dict(job.sampling), "samples": job.samples,
           "prompts": stages.digest(job.prompts), "limit": job.limit, **_engine_key(job.engine)}
    if job.icl:
        key["icl"] = stages.digest(Path(job.icl))
    return stages.run(stage, work, key=key, outputs=[job.out, job.prompts_copy])


def _engine_key(engine: EngineOptions) -> dict[str, Any]:
    """The engine in a stage key: vLLM's options when it is used, nothing for the HF engine (keys of runs made
    before the choice existed stay valid)."""
    key = engine.stage_key()
    return {"engine": key} if key else {}


def reference_loss(stages: Stages, job: ReferenceJob, stage: str = "reference-loss") -> dict[str, Any]:
    """Mean NLL of the reference answers' tokens (EOT included) under the job's model, rendered in its format."""
    from lima_align.evaluate.reference_loss import reference_losses, summarize_losses
    from lima_align.fileio import write_json
    from lima_align.formats.rows import read_examples
    from lima_align.generate.loading import load_for_generation

    def work() -> dict[str, Any]:
        examples = [ex for ex in read_examples(job.references) if len(ex.conversations) >= 2]
        lm, tokenizer, fmt = load_for_generation(job.model, add_eot=job.add_eot, device=job.device)
        losses = reference_losses(lm, tokenizer, fmt, [ex.conversations[:2] for ex in examples])
        del lm
        gc.collect()
        per = {ex.id: x for ex, x in zip(examples, losses)}
        summary = summarize_losses(losses)
        write_json(job.out, {"model": job.name, "summary": summary, "references": per})
        return {"file": str(job.out), **summary,
                "summary": f"{summary['references']} references, mean token loss {summary['mean_loss']:.3f}"}

    key = {"model": job.model_key, "name": job.name, "references": stages.digest(job.references)}
    return stages.run(stage, work, key=key, outputs=[job.out])


# --------------------------------------------------------------------------------------------- judge
def judge_pairs(stages: Stages, judge: Any, pairings: list[Pairing], cache: Path, *, limit: int = 0,
                stage: str = "judge") -> dict[str, Any]:
    """Each pairing judged in both orders (resumes row by row; calls cached in ``cache``)."""
    from lima_align.evaluate.judging import JudgeSetup, judge_pairwise

    def work() -> dict[str, Any]:
        setup = JudgeSetup(judge, cache_path=cache)
        results = {}
        for p in pairings:
            report, pairing = judge_pairwise(setup, p.answers, p.baseline, p.out, limit=limit or None)
            results[p.name] = {**pairing, "missing": report.missing, "tasks": report.tasks}
        gc.collect()
        return {"judgments": [str(p.out) for p in pairings], "baselines": results,
                "summary": "; ".join(f"vs {k}: {v['paired']} pairs ({v['missing']} unparsed)"
                                     for k, v in results.items()) or "no baselines: nothing judged"}

    key = {"judge": judge.identity(), "limit": limit,
           "pairs": [[p.name, stages.digest(p.answers), stages.digest(p.baseline)] for p in pairings]}
    return stages.run(stage, work, key=key, outputs=[p.out for p in pairings])


def judge_likert(stages: Stages, judge: Any, answers: Path, out: Path, cache: Path,
                 stage: str = "judge") -> dict[str, Any]:
    """Every answer graded 1-6 for helpfulness (the paper's ablation protocol)."""
    from lima_align.evaluate.judging import JudgeSetup, judge_single

    def work() -> dict[str, Any]:
        report = judge_single(JudgeSetup(judge, cache_path=cache), "likert", answers, out)
        gc.collect()
        return {"judgments": str(out), **report.to_dict(),
                "summary": f"{report.tasks} answers graded by {judge.name} ({report.missing} unparsed)"}

    key = {"judge": judge.identity(), "answers": stages.digest(answers)}
    return stages.run(stage, work, key=key, outputs=[out])


# -------------------------------------------------------------------------------------------- report
def report(stages: Stages, judgments: list[Path], folder: Path, title: str,
           outputs: list[Path] = ()) -> dict[str, Any]:
    """The HTML report (+ figures and summary tables) of judgment files into ``folder``, with the judge-free
    alignment metrics of the ``outputs`` files (the answers that were judged)."""
    from lima_align.report.build import build_report

    def work() -> dict[str, Any]:
        if not judgments:
            return {"report": None, "summary": "no judgments: no report (add baselines to the recipe)"}
        paths = build_report(judgments, folder, title=title, outputs=list(outputs))
        html = next((str(p) for p in paths if str(p).endswith(".html")), str(folder))
        return {"report": html, "files": [str(p) for p in paths], "summary": html}

    key = {"judgments": [stages.digest(j) for j in judgments], "title": title,
           "outputs": [stages.digest(o) for o in outputs]}
    return stages.run("report", work, key=key, outputs=[folder] if judgments else [])


# -------------------------------------------------------------------------------------------- select
def select(stages: Stages, spec: Any, judge: Any, trained: dict[str, Any], folder: Path,
           sampling: SamplingConfig, device: str | None = None, *,
           engine: EngineOptions = EngineOptions()) -> dict[str, Any]:
    """The checkpoint the rest of the job uses: the judge's pick on the dev prompts (``spec``: a
    :class:`~lima_align.pipeline.selection.SelectSpec`) among ``<folder>/train/checkpoint-*``, or the last one
    when selection is off. Dev answers are decoded with ``sampling`` (the evaluation's) as the spec changes it.
    Checkpoints are found by name under ``folder``, so a moved run folder still works."""
    from lima_align.evaluate.judging import JudgeSetup
    from lima_align.pipeline.selection import select_checkpoint

    train_dir = folder / "train"
    dev = Path(spec.dev) if spec.dev else folder / "mix" / "train.dev.jsonl"

    def work() -> dict[str, Any]:
        if not spec.enabled:
            last = train_dir / Path(trained["checkpoint"]).name
            return {"checkpoint": str(last), "method": "last checkpoint", "summary": f"selection off: {last}"}
        if not dev.is_file() or not dev.read_text(encoding="utf-8").strip():
            raise LimaError(f"checkpoint selection needs dev prompts: {dev} is missing or empty (give the mix a "
                            "dev split, set select.dev, or select.enabled=false)")
        result = select_checkpoint(train_dir, dev, JudgeSetup(judge, cache_path=folder / "judge-cache.sqlite"),
                                   spec.options(sampling, device, engine), folder / "select")
        gc.collect()
        return {"checkpoint": result["checkpoint"], "best": result["best"], "method": result["method"],
                "scores": {k: v["score"] for k, v in result["scores"].items()},
                "summary": f"{result['best']} by {result['method']} -> {result['checkpoint']}"}

    key = {"select": to_dict(spec), "judge": judge.identity(), "train": trained["key"],
           "dev": stages.digest(dev) if spec.enabled else None,
           "decoding": to_dict(spec.options(sampling).sampling) if spec.enabled else None,
           **_engine_key(engine)}
    return stages.run("select", work, key=key, outputs=[folder / "select"] if spec.enabled else [])
