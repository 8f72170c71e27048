"""``lima-align run``: the recipe, the curate arguments, and a tiny real run from dumps to report, re-run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from lima_align.config import ConfigError
from lima_align.errors import LimaError
from lima_align.pipeline.run import load_run_config, run_pipeline, source_configs, stage_status

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("LIMA_SHARED_DATA", REPO.parent / "shared" / "data"))
TINY = REPO / "configs" / "runs" / "tiny-cpu.yaml"


@pytest.mark.parametrize("override, message", [
    ("sources.0.command=twitter", "command must be one of"),
    ("select.method=vibes", "select.method must be likert or pairwise"),
    ("samples=0", "samples must be >= 1"),
])
def test_bad_recipes_are_clear_errors(override, message):
    import yaml

    values = yaml.safe_load(TINY.read_text())
    key, value = override.split("=")
    node = values
    *parents, last = key.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = int(value) if value.isdigit() else value
    from lima_align.config import from_dict
    from lima_align.pipeline.run import RunConfig

    with pytest.raises((ConfigError, ValueError), match=message):
        from_dict(RunConfig, values, where="recipe")


def test_unknown_curate_option_names_the_source(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_run_config(TINY, [f"out={tmp_path}"])
    cfg.sources[1].options["min-votes"] = 3  # the second source: the check comes before the first one runs
    with pytest.raises(ConfigError, match=r"source 'wikihow' \(curate wikihow\): unknown option 'min-votes'"):
        run_pipeline(cfg, log=lambda m: None)
    assert not (tmp_path / "candidates").exists()


def _ran(logs: list[str]) -> list[str]:
    """Stage names that ran (not skipped) in one pipeline run."""
    names = []
    for line in logs:
        if line.startswith("[") and " s - " in line:
            names.append(line.split("] ", 1)[1].split(":", 1)[0])
    return names


def test_tiny_run_from_dumps_to_report_then_skips_and_redoes_only_what_changed(tmp_path, monkeypatch):
    if not (SHARED / "stackexchange" / "beer.stackexchange.com").is_dir():
        pytest.skip(f"shared data absent: {SHARED}")
    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    logs: list[str] = []
    result = run_pipeline(load_run_config(TINY, [f"out={out}"]), log=logs.append)
    all_stages = ["curate-stackexchange", "curate-wikihow", "curate-writingprompts", "curate-natural_instructions",
                  "mix", "train", "select", "generate", "judge", "report"]
    assert _ran(logs) == all_stages
    assert result["mix"]["splits"]["train"] == 12 and result["mix"]["splits"]["dev"] == 2
    assert sorted(p.name for p in (out / "train").glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    assert result["select"]["best"] in ("epoch-1", "epoch-2")
    assert Path(result["select"]["checkpoint"]).name in ("checkpoint-3", "checkpoint-6")
    rows = [json.loads(line) for line in (out / "outputs" / "tiny.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["generator"] == "tiny" for r in rows)
    judged = [json.loads(line) for line in (out / "judgments" / "tiny-vs-text-davinci-003.jsonl").read_text()
              .splitlines()]
    assert len(judged) == 3 and all(sorted(c["tag"] for c in r["calls"]) == ["ab", "ba"] for r in judged)
    assert Path(result["report"]["report"]).is_file()

    logs.clear()
    run_pipeline(load_run_config(TINY, [f"out={out}"]), log=logs.append)
    assert _ran(logs) == [] and sum("skipped" in line for line in logs) == len(all_stages)
    status = stage_status(load_run_config(TINY, [f"out={out}"]))
    assert [n for n, _ in status] == all_stages and all(state.startswith("done in ") for _, state in status)

    logs.clear()  # a decoding change: the answers, their judgments and the report are redone, nothing before
    run_pipeline(load_run_config(TINY, [f"out={out}", "sampling.max_new_tokens=12"]), log=logs.append)
    assert _ran(logs) == ["generate", "judge", "report"]
    rows = [json.loads(line) for line in (out / "outputs" / "tiny.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["completion_tokens"] <= 12 for r in rows)

    logs.clear()  # logging settings and the run folder's spelling do not change any result: nothing re-runs
    run_pipeline(load_run_config(TINY, [f"out={out}/../run", "sampling.max_new_tokens=12",
                                    "train_settings.tensorboard=true"]), log=logs.append)
    assert _ran(logs) == []

    # a training change after checkpoints exist is refused, naming it (no silent deletion of hours of work)
    with pytest.raises(LimaError, match=r"train: its settings or inputs changed since it ran \(train.lr\)"):
        run_pipeline(load_run_config(TINY, [f"out={out}", "train_settings.lr=2e-4"]), log=lambda m: None)
    assert (out / "train" / "checkpoint-6").is_dir()

    logs.clear()  # --from train: training and everything after it again, this time under a launcher (torchrun)
    launch = f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node 1"
    result = run_pipeline(load_run_config(TINY, [f"out={out}", "sampling.max_new_tokens=12", f"train_launch={launch}"]),
                          log=logs.append, rerun_from="train")
    assert _ran(logs) == ["train", "select", "generate", "judge", "report"]
    assert any("-m lima_align.train" in line for line in logs) and (out / "train-config.yaml").is_file()
    assert result["train"]["steps"] == 6 and result["train"]["last_loss"] is not None
    assert [Path(c).name for c in result["train"]["checkpoints"]] == ["checkpoint-3", "checkpoint-6"]

    logs.clear()  # a moved run folder: the stages recorded the old paths; new answers still find the checkpoint
    moved = tmp_path / "moved"
    out.rename(moved)
    run_pipeline(load_run_config(TINY, [f"out={moved}", "sampling.max_new_tokens=10", f"train_launch={launch}"]),
                 log=logs.append)
    assert _ran(logs) == ["generate", "judge", "report"]
    assert (moved / "outputs" / "tiny.jsonl").is_file()


def test_paper_run_config_resolves_and_every_source_gets_its_typed_config(tmp_path, monkeypatch):
    from lima_align.pipeline.run import mix_config, train_config
    from lima_align.sources import get_source

    monkeypatch.chdir(REPO)
    cfg = load_run_config(REPO / "configs" / "runs" / "lima-paper.yaml", [f"out={tmp_path}"])
    configs = source_configs(cfg)
    assert [type(c) for c in configs] == [get_source(s.command).config_type for s in cfg.sources]
    by_name = dict(zip((s.name for s in cfg.sources), configs))
    assert [c.tasks for n, c in by_name.items() if n.startswith("natural")] == [50]  # options: {tasks: 50}
    assert sorted(c.max_candidates for c in configs if hasattr(c, "max_candidates")) == [210, 450]
    mix = mix_config(cfg)
    assert sum(s.n for s in mix.inputs) == 1000 and sum(s.n for s in mix.dev) == 50
    assert sum(s.n for s in mix.test) == 300 and mix.base_dir == str(tmp_path)
    train = train_config(cfg)
    assert (train.model, train.epochs, train.batch_size, train.residual_dropout) == (
        "huggyllama/llama-65b", 15, 32, 0.3)
    assert train.data == str(tmp_path / "mix" / "train.jsonl") and train.out == str(tmp_path / "train")
    assert [b.name for b in cfg.baselines] == ["alpaca-65b", "text-davinci-003", "bard", "claude", "gpt-4"]
    assert cfg.select.epochs == "5-10" and cfg.sampling.repetition_penalty == 1.2
    assert cfg.train_launch.startswith("accelerate launch")
    from lima_align.generate.engines import EngineOptions

    assert cfg.engine == EngineOptions(name="vllm", tensor_parallel_size=4, data_parallel_size=2,
                                       gpu_memory_utilization=0.9, max_model_len=4096)
    assert cfg.select.options(cfg.sampling, engine=cfg.engine).engine == cfg.engine  # select decodes on it too


def test_missing_inputs_are_listed_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_run_config(REPO / "configs" / "runs" / "lima-paper.yaml", [f"out={tmp_path / 'run'}"])
    with pytest.raises(LimaError) as err:
        run_pipeline(cfg, log=lambda m: None)
    message = str(err.value)
    assert "source 'stackexchange': dumps/stackexchange/" in message and "source 'authored': authored/" in message
    assert "baseline 'gpt-4': baselines/gpt-4.jsonl" in message
    assert not (tmp_path / "run").exists()  # nothing started
