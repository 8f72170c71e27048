"""A whole fine-tune of a tiny model on real LIMA rows: artifacts, learning, stopping, exact resume, SIGTERM."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lima_align.chat_format import FORMAT_FILE, ChatFormat, load_chat_format, render
from lima_align.train import train
from lima_align.train.checkpoint import MARKER, RUN_INFO, complete_checkpoints

from .conftest import small_config, tiny_llama

RUNNER = Path(__file__).with_name("_runner.py")


def test_fine_tune_learns_to_stop_and_saves_loadable_checkpoints(lima_path, base_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = copy.deepcopy(base_tokenizer)
    model = tiny_llama(len(tokenizer), layers=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = small_config(lima_path, tmp_path / "run", max_examples=4, max_chars=260, epochs=40,
                          batch_size=4, micro_batch_size=4, lr=1e-2, lr_end=1e-3, residual_dropout=0.0,
                          save_total_limit=2, weight_decay=0.0, keep_epochs="all")
    result = train(config, model=model, tokenizer=tokenizer, log=lambda s: None)

    # artifacts: per-epoch checkpoints (rotated to the last 2), each complete with config + template + versions
    assert [c.name for c in result.checkpoints] == ["checkpoint-39", "checkpoint-40"]
    last = result.checkpoints[-1]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "optimizer.pt", "scheduler.pt",
                 "rng_state.pth", "trainer_state.json", MARKER, RUN_INFO, FORMAT_FILE):
        assert (last / name).is_file(), name
    info = json.loads((last / RUN_INFO).read_text())
    assert info["config"]["epochs"] == 40 and info["versions"]["transformers"]
    assert info["config"]["chat"]["max_len"] == 96 and load_chat_format(last) == ChatFormat(max_len=96)
    # every parameter changed; the loss went down
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == set(before)
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert losses[-1] < 0.5 * losses[0]

    # plain transformers loads the checkpoint; its chat template reproduces our prompts; greedy decoding stops
    loaded_tok = AutoTokenizer.from_pretrained(last)
    loaded = AutoModelForCausalLM.from_pretrained(last).eval()
    eot = loaded_tok.convert_tokens_to_ids("<|eot|>")
    stopped = 0
    for item_turns in _training_turns(config):
        prompt_ids = loaded_tok.apply_chat_template([{"role": "user", "content": item_turns[0]}], tokenize=True,
                                                    add_generation_prompt=True, return_dict=False)
        assert prompt_ids == render(item_turns[:1], loaded_tok, add_generation_prompt=True).input_ids
        out = loaded.generate(torch.tensor([prompt_ids]), max_new_tokens=120, do_sample=False)
        stopped += int(out[0, len(prompt_ids):].tolist().count(eot) > 0)
        assert loaded.generation_config.eos_token_id[0] == eot
    print("stopped", stopped)
    assert stopped >= 3  # the model learned to end its turns with EOT


def _training_turns(config):
    from lima_align.train.data import load_examples

    examples, _ = load_examples(config.data, None, config.max_examples, config.max_chars)
    return [ex.conversations for ex in examples]


def _run(config_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUNNER), str(config_path), *extra], capture_output=True,
                          text=True, timeout=300)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_resume_after_sigkill_and_sigterm_is_bit_identical(lima_path, tmp_path):
    base = small_config(lima_path, tmp_path / "x", max_examples=16, epochs=3, batch_size=8, micro_batch_size=4,
                        residual_dropout=0.2)
    runs = {}
    for name in ("full", "killed", "termed"):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**dataclasses.asdict(base), "out": str(tmp_path / name), "lora": {}}))
        runs[name] = path
    full = _run(runs["full"])
    assert full.returncode == 0, full.stderr[-3000:]
    final = complete_checkpoints(tmp_path / "full")[-1]

    killed = _run(runs["killed"], "--kill-at", "3")  # mid epoch 2: only checkpoint-2 (epoch 1) is complete
    assert killed.returncode == -9
    assert [c.name for c in complete_checkpoints(tmp_path / "killed")] == ["checkpoint-2"]
    resumed = _run(runs["killed"], "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # SIGTERM during step 2: the step after it (3, mid epoch 2) finishes, is saved, and the run exits cleanly
    termed = _run(runs["termed"], "--term-at", "2")
    assert termed.returncode == 0, termed.stderr[-3000:]
    assert json.loads(termed.stdout.strip().splitlines()[-1])["interrupted"] is True
    assert complete_checkpoints(tmp_path / "termed")[-1].name == "checkpoint-3"
    assert _run(runs["termed"], "--resume").returncode == 0

    expected = _weights(final)
    for name in ("killed", "termed"):
        got = _weights(complete_checkpoints(tmp_path / name)[-1])
        assert complete_checkpoints(tmp_path / name)[-1].name == final.name
        assert all(torch.equal(expected[k], got[k]) for k in expected), f"{name}: weights differ after resume"
