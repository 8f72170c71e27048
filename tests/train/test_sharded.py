"""Sharded training on two CPU processes (gloo), launched exactly like a GPU run: ``accelerate launch
--config_file configs/accelerate/fsdp2.yaml`` (FSDP2) or ``zero3.yaml`` (DeepSpeed ZeRO-3, ``DS_ACCELERATOR=cpu``).
A tiny Llama with TIED embeddings (the hard case for sharding: embedding and head are one parameter) trains like
one process with the same global batch, checkpoints shards every epoch, resumes after SIGKILL to the same weights,
and its final checkpoint loads with plain ``from_pretrained``.

accelerate on CPU would silently fall back to DDP (its state only turns FSDP on for GPU-like devices);
``lima_align.train.sharding.enable_fsdp_on_cpu`` turns it back on, and the probe below checks that the layers
really were sharded (DTensor parameters) and that the EOT rows every rank trained from are the mean-initialised
ones added before sharding.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lima_align.train.checkpoint import MARKER, complete_checkpoints

from .conftest import REPO, small_config, tiny_llama

RUNNER = Path(__file__).with_name("_runner.py")
LAUNCH_CONFIGS = REPO / "configs" / "accelerate"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu"}


def _write(config, path: Path) -> Path:
    path.write_text(json.dumps({**dataclasses.asdict(config), "lora": dataclasses.asdict(config.lora)}))
    return path


def _run(path: Path, processes: int, *options: str, expect: int = 0, launch: str = "fsdp2.yaml",
         tied: bool = True) -> dict | None:
    """Run _runner.py on one process, or on ``processes`` under accelerate launch with a shipped config."""
    launcher = ([] if processes == 1 else
                ["-m", "accelerate.commands.launch", "--config_file", str(LAUNCH_CONFIGS / launch),
                 "--num_processes", str(processes), "--main_process_port", "0"])
    flags = ["--probe"] + (["--tied"] if tied else [])
    done = subprocess.run([sys.executable, *launcher, str(RUNNER), str(path), *flags, *options],
                          capture_output=True, text=True, timeout=300, env=ENV, cwd=REPO)
    if expect == 0:
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        return json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode != 0, done.stdout[-2000:]
    return None


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _config(lima_path: Path, out: Path, processes: int, **overrides):
    # global batch 8: 1 x 8 on one process; 2 micro-batches of 2 x 2 processes. No residual dropout by default
    # (each process draws its own masks; the resume test has it). keep_epochs=1: epoch 1 keeps its weights (from
    # the shards) but not its optimizer state once epoch 2 is saved.
    settings = dict(max_examples=16, epochs=2, batch_size=8, micro_batch_size={1: 8, 2: 2}[processes],
                    residual_dropout=0.0, keep_epochs="1", **overrides)
    return small_config(lima_path, out, **settings)


@pytest.fixture(scope="module")
def one_process(lima_path, base_tokenizer, tmp_path_factory):
    """The reference: one process, global batch 8, the base model loaded from a folder like a real one, gradient
    checkpointing on (as in the 7B/65B presets; it recomputes inside the sharded layers)."""
    root = tmp_path_factory.mktemp("reference")
    base = root / "base"
    tiny_llama(len(base_tokenizer), tied=True).save_pretrained(base)
    base_tokenizer.save_pretrained(base)
    config = _config(lima_path, root / "run", 1, model=str(base), gradient_checkpointing=True)
    return root, _run(_write(config, root / "run.json"), 1, "--load")


def _assert_same_training(one: dict, two: dict, out_one: Path, out_two: Path, what: str) -> None:
    assert (two["world_size"], two["backend"], one["global_step"], two["global_step"]) == (2, "gloo", 4, 4)
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-6, atol=0)
    torch.testing.assert_close(torch.tensor(two["grad_norms"]), torch.tensor(one["grad_norms"]), rtol=1e-4, atol=0)
    for name in ("checkpoint-2", "checkpoint-4"):
        expected, got = (load_file(str(out / name / "model.safetensors")) for out in (out_one, out_two))
        diff = _max_diff(expected, got)
        print(f"{what} vs one process, {name}: max |weight difference| = {diff:.3g}; losses "
              f"{max(abs(a - b) for a, b in zip(one['losses'], two['losses'])):.3g}")
        assert diff < 1e-5, name


def _assert_loadable(final: Path, base_vocab: int) -> None:
    """Plain transformers loads the export, tied, with the EOT token; generation stops at EOT."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    eot = tokenizer.convert_tokens_to_ids("<|eot|>")
    assert eot == base_vocab and model.get_input_embeddings().weight.shape[0] == base_vocab + 2
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.generation_config.eos_token_id[0] == eot
    saved = load_file(str(final / "model.safetensors"))
    assert "lm_head.weight" not in saved  # one copy of the tied matrix
    for name, tensor in saved.items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_fsdp2_on_two_cpu_processes_trains_like_one_and_exports_a_loadable_model(one_process, lima_path,
                                                                                    base_tokenizer, tmp_path):
    # the base model comes from the same folder; with fsdp_cpu_ram_efficient_loading accelerate shards it on the
    # meta device and broadcasts rank 0's values (the EOT rows included) to every rank
    reference, one = one_process
    base = reference / "base"
    config = _config(lima_path, tmp_path / "p2", 2, model=str(base), gradient_checkpointing=True)
    two = _run(_write(config, tmp_path / "p2.json"), 2, "--load")

    probe = two["probe"]
    assert probe["sharded_layers"] and probe["sharded_root"] and probe["dtensor"] and probe["tied"]
    eot_rows = len(base_tokenizer) + 2  # EOT and a dedicated pad token were added before sharding ...
    assert probe["rows"] == eot_rows and probe["new_rows_max_err"] < 1e-6  # ... as the mean of the old rows
    # every epoch: shards + sharded optimizer state; the last one also the full weights (safetensors)
    assert {"pytorch_model_fsdp_0", "optimizer_0", MARKER} <= set(probe["saved"]["2"])
    assert {"pytorch_model_fsdp_0", "optimizer_0", "model.safetensors", "tokenizer.json"} <= set(probe["saved"]["4"])

    _assert_same_training(one, two, reference / "run", tmp_path / "p2", "FSDP2")

    # the policy: epoch 1 keeps its weights without the resume state; only the last checkpoint resumes
    kept = tmp_path / "p2" / "checkpoint-2"
    assert not (kept / "optimizer_0").exists() and not (kept / "pytorch_model_fsdp_0").exists()
    assert json.loads((kept / MARKER).read_text())["resumable"] is False

    _assert_loadable(tmp_path / "p2" / "checkpoint-4", len(base_tokenizer))


def test_zero3_on_two_cpu_processes_trains_like_one_and_exports_a_loadable_model(one_process, lima_path,
                                                                                    base_tokenizer, tmp_path):
    pytest.importorskip("deepspeed")
    reference, one = one_process
    config = _config(lima_path, tmp_path / "z2", 2, model=str(reference / "base"), gradient_checkpointing=True)
    two = _run(_write(config, tmp_path / "z2.json"), 2, "--load", launch="zero3.yaml")
    probe = two["probe"]  # the embedding is partitioned: the probe gathered it
    assert probe["rows"] == len(base_tokenizer) + 2 and probe["new_rows_max_err"] < 1e-6 and probe["tied"]
    assert {"global_step2", "latest"} <= set(two["probe"]["saved"]["2"])  # DeepSpeed's partitioned state
    _assert_same_training(one, two, reference / "run", tmp_path / "z2", "ZeRO-3")
    kept = tmp_path / "z2" / "checkpoint-2"  # the policy: epoch 1's weights without DeepSpeed's resume state
    assert (kept / "model.safetensors").is_file() and not (kept / "global_step2").exists()
    _assert_loadable(tmp_path / "z2" / "checkpoint-4", len(base_tokenizer))


@pytest.mark.slow  # three 2-process runs: ~65 s (FSDP2), ~80 s (ZeRO-3) on 2 cores
@pytest.mark.parametrize("launch", ["fsdp2.yaml", "zero3.yaml"])
def test_sigkill_mid_epoch_resumes_from_the_shards_to_the_same_weights(launch, lima_path, base_tokenizer, tmp_path):
    # residual dropout on: the hooks installed before sharding still drop on the sharded layers, and resuming
    # restores every rank's RNG, so the resumed run is the uninterrupted one
    if launch == "zero3.yaml":
        pytest.importorskip("deepspeed")
    paths = {}
    for name in ("full", "killed"):
        config = small_config(lima_path, tmp_path / name, max_examples=16, epochs=2, batch_size=8,
                              micro_batch_size=2, residual_dropout=0.2, keep_epochs="none")
        paths[name] = _write(config, tmp_path / f"{name}.json")
    full = _run(paths["full"], 2, launch=launch)
    top_layer_rate = 0.2  # 2 layers: p = 0 at the bottom, 0.2 at the top
    assert full["probe"]["dropout_hooks"] == 1  # on the top layer's MLP, which the probe's recorder follows
    shares = full["probe"]["zero_shares"]
    assert sum(shares) / len(shares) == pytest.approx(top_layer_rate, abs=0.03)

    _run(paths["killed"], 2, "--kill-at", "3", expect=-9, launch=launch)  # mid epoch 2: epoch 1 is complete
    assert [c.name for c in complete_checkpoints(tmp_path / "killed")] == ["checkpoint-2"]
    if launch == "fsdp2.yaml":  # not in keep_epochs, not the last: shards only
        assert not (tmp_path / "killed" / "checkpoint-2" / "model.safetensors").exists()
    resumed = _run(paths["killed"], 2, "--resume", launch=launch)
    assert resumed["global_step"] == 4
    expected, got = (load_file(str(tmp_path / n / "checkpoint-4" / "model.safetensors")) for n in ("full", "killed"))
    diff = _max_diff(expected, got)
    print(f"{launch} SIGKILL + resume vs uninterrupted: max |weight difference| = {diff:.3g}")
    assert diff == 0.0


@pytest.mark.slow  # two runs, ~40 s
def test_lora_under_fsdp2_trains_like_one_process_with_untied_embeddings(lima_path, base_tokenizer, tmp_path):
    from lima_align.train import LoraSettings

    lora = LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0)  # LoRA dropout would differ between processes
    outs = {}
    for processes in (1, 2):
        config = _config(lima_path, tmp_path / f"l{processes}", processes, lora=lora, lr=1e-2)
        outs[processes] = _run(_write(config, tmp_path / f"l{processes}.json"), processes, tied=False)
    assert outs[2]["probe"]["sharded_layers"]
    torch.testing.assert_close(torch.tensor(outs[2]["losses"]), torch.tensor(outs[1]["losses"]), rtol=1e-6, atol=0)
    expected, got = (load_file(str(tmp_path / f"l{n}" / "checkpoint-4" / "adapter_model.safetensors"))
                     for n in (1, 2))
    diff = _max_diff(expected, got)
    print(f"LoRA under FSDP2 vs one process: max |adapter difference| = {diff:.3g}")
    assert diff < 1e-5


def test_lora_under_fsdp2_with_tied_embeddings_is_refused_with_the_reason(base_tokenizer, monkeypatch):
    from lima_align.errors import LimaError
    from lima_align.train import LoraSettings, TrainConfig
    from lima_align.train.sharding import check_supported

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what accelerate launch --config_file fsdp2.yaml sets
    monkeypatch.setenv("FSDP_VERSION", "2")
    config = TrainConfig(lora=LoraSettings(enabled=True))
    with pytest.raises(LimaError, match="tied embeddings"):
        check_supported(config, tiny_llama(64, tied=True), world_size=2)
    check_supported(config, tiny_llama(64, tied=False), world_size=2)


def test_strategies_become_trainer_arguments_and_contradictions_are_errors(monkeypatch):
    from lima_align.errors import LimaError
    from lima_align.train import TrainConfig
    from lima_align.train.sharding import FSDP2_CONFIG, ZERO3_CONFIG, strategy_arguments
    from lima_align.train.trainer import _memory_arguments

    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    # torchrun + strategy=fsdp2: the shipped settings through TrainingArguments; FSDP's own activation checkpointing
    fsdp = _memory_arguments(TrainConfig(strategy="fsdp2", gradient_checkpointing=True), world_size=2)
    assert fsdp == {"fsdp": True, "fsdp_config": {**FSDP2_CONFIG, "activation_checkpointing": True}}
    assert _memory_arguments(TrainConfig(gradient_checkpointing=True), 2) == {"gradient_checkpointing": True}
    with pytest.raises(LimaError, match="launch 2 or more"):
        strategy_arguments(TrainConfig(strategy="fsdp2"), world_size=1)
    if importlib.util.find_spec("deepspeed") is not None:
        assert strategy_arguments(TrainConfig(strategy="zero3"), 2) == {"deepspeed": ZERO3_CONFIG}
    # under accelerate launch --config_file fsdp2.yaml the launcher decides; a contradicting strategy is an error
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert strategy_arguments(TrainConfig(), 2) == strategy_arguments(TrainConfig(strategy="fsdp2"), 2) == {}
    with pytest.raises(LimaError, match="launcher's accelerate config asks for fsdp2"):
        strategy_arguments(TrainConfig(strategy="ddp"), 2)
