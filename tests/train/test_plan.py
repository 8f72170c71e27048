"""``lima-align train --plan`` prints memory per GPU for the paper's models offline, and its estimate is checked
against the peak memory measured on CPU for a small model; the checkpoint policy keeps what selection needs."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from lima_align.train.plan import PlanSetup, model_config, model_shape, plan_memory

from .conftest import REPO, small_config, tiny_llama


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(REPO)


def test_plan_prints_llama_7b_and_65b_from_built_in_shapes_offline(offline, capsys):
    from lima_align.cli import main

    assert main(["train", "configs/train/lima-65b.yaml", "--plan", "--gpus", "8", "--gpu-memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "65.29B parameters, 80 layers" in out
    for strategy in ("ddp", "fsdp2", "zero3", "lora"):
        assert f"\n{strategy} on 8 GPU(s) of 80 GB" in out
    assert "accelerate launch --config_file configs/accelerate/fsdp2.yaml --num_processes 8" in out
    assert "keep_epochs=5-10" in out and "7 kept with weights" in out  # epochs 5-10 and the last (15)
    # two nodes: FSDP2 with fp32 master weights fits 65B on 16 x 80 GB
    assert main(["train", "configs/train/lima-65b.yaml", "--plan", "--nodes", "2", "--strategy", "fsdp2"]) == 0
    out = capsys.readouterr().out
    assert "fits" in out and "does NOT" not in out and "--machine_rank $NODE_RANK" in out
    assert main(["train", "configs/train/lima-7b.yaml", "--plan", "--gpus", "1", "--strategy", "lora"]) == 0
    assert "6.74B parameters" in capsys.readouterr().out


def test_plan_reads_a_local_config_json_and_a_built_in_model(offline, tmp_path, capsys):
    from transformers import LlamaConfig

    from lima_align.cli import main
    from lima_align.models import is_cached

    path = tmp_path / "config.json"
    path.write_text(json.dumps(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                           num_attention_heads=4, vocab_size=1000).to_dict()))
    assert main(["train", "--plan", "--config-json", str(path), "--strategy", "ddp", "--gpus", "1"]) == 0
    assert "2 layers, hidden 64, vocabulary 1000" in capsys.readouterr().out
    if is_cached("smollm2-135m-instruct"):
        shape = model_shape(model_config("smollm2-135m-instruct"))
        assert 0.13e9 < shape.params < 0.14e9 and shape.layers == 30


def _measured_peak(model, batch, chunk: int) -> int:
    """Peak bytes of one steady-state AdamW step on CPU: weights + optimizer state + what the step allocates."""
    from torch.profiler import ProfilerActivity, profile

    from lima_align.train.loss import lm_loss_sum

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        loss_sum, n = lm_loss_sum(model, batch, chunk)
        (loss_sum / n).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # the first step creates the optimizer state
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    live = peak = 0
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    static = sum(p.numel() * p.element_size() for p in model.parameters())
    static += sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                  if torch.is_tensor(v) and v.dim() > 0)
    return static + peak


@pytest.mark.parametrize("checkpointing", [False, True], ids=["no-checkpointing", "gradient-checkpointing"])
def test_plan_is_within_25_percent_of_the_measured_cpu_peak_and_never_below(checkpointing):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = tiny_llama(49154, layers=4, hidden=256, tied=True).train()  # SmolLM2's vocabulary, like the runs
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ids = torch.randint(0, 49154, (4, 256))
    batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
    measured = _measured_peak(model, batch, chunk=256)
    setup = PlanSetup(strategy="ddp", gpus=1, micro_batch_size=4, seq_len=256, gradient_checkpointing=checkpointing,
                      loss_chunk=256, weight_bytes=4, mixed_precision=False, residual_dropout=False)
    planned = plan_memory(model_shape(model.config), setup).total
    error = (planned - measured) / measured
    print(f"plan {planned / 2**20:.1f} MB vs measured peak {measured / 2**20:.1f} MB: {error:+.1%}")
    assert 0 <= error < 0.25


def test_checkpoints_keep_weights_for_the_window_and_resume_state_for_the_newest(lima_path, base_tokenizer,
                                                                                 tmp_path):
    from lima_align.pipeline.selection import checkpoints_in_window
    from lima_align.train import train
    from lima_align.train.checkpoint import MARKER, last_complete_checkpoint

    logged: list[str] = []
    config = small_config(lima_path, tmp_path / "run", max_examples=8, epochs=4, batch_size=4, micro_batch_size=4,
                          keep_epochs="2-3", residual_dropout=0.0)
    result = train(config, model=tiny_llama(len(base_tokenizer)), tokenizer=copy.deepcopy(base_tokenizer),
                   log=logged.append)
    assert [c.name for c in result.checkpoints] == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]  # epoch 1 gone
    for kept in result.checkpoints[:2]:
        assert (kept / "model.safetensors").is_file() and not (kept / "optimizer.pt").exists()
        assert json.loads((kept / MARKER).read_text())["resumable"] is False
    newest = result.checkpoints[-1]
    assert (newest / "optimizer.pt").is_file() and last_complete_checkpoint(config.out) == newest
    assert [e for e, _ in checkpoints_in_window(config.out, (2, 3))] == [2, 3]  # what selection reads

    disk_line = next(line for line in logged if "checkpoints:" in line)  # printed before training
    assert "3 kept with weights" in disk_line
    planned_gb = float(disk_line.split(" = ")[1].split(" GB")[0])
    on_disk = sum(f.stat().st_size for c in result.checkpoints for f in c.iterdir()
                  if f.name in ("model.safetensors", "optimizer.pt"))
    assert planned_gb * 2**30 == pytest.approx(on_disk, rel=0.05)
