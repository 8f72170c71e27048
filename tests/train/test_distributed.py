"""Two CPU processes (DDP over gloo) train exactly like one process with the same global batch.

Each process sees half of every optimizer step's examples, so the two halves hold different numbers of supervised
tokens; the loss is still the mean over the supervised tokens of the WHOLE step, because every process divides its
sum by Trainer's ``num_items_in_batch`` (gathered over processes) and DDP averages the gradients. A per-process mean
would weight the tokens of the shorter half more, and the losses, gradients and weights would drift apart.

The processes are started with ``torch.distributed.run`` (torchrun). ``accelerate launch --cpu --num_processes 2``
is NOT an equivalent: accelerate's CPU launcher starts a single process unless it is given an MPI hostfile.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lima_align.train.checkpoint import complete_checkpoints

from .conftest import small_config

RUNNER = Path(__file__).with_name("_runner.py")


def _launch(config, path: Path, processes: int, *options: str) -> dict:
    if config is not None:
        path.write_text(json.dumps({**dataclasses.asdict(config), "lora": {}}))
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone",
                                          f"--nproc_per_node={processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, *launcher, str(RUNNER), str(path), *options], capture_output=True,
                          text=True, timeout=240, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_cpu_processes_match_one_process(lima_path, base_tokenizer, tmp_path):
    # global batch 8: one micro-batch of 8 on one process; micro 2 x accumulation 2 x 2 processes on two, i.e. the
    # same 8 examples split into 4 micro-batches of different token counts over 2 processes. No residual dropout:
    # each process would draw its own masks.
    runs = {}
    for processes, micro in ((1, 8), (2, 2)):
        config = small_config(lima_path, tmp_path / f"p{processes}", max_examples=16, epochs=2, batch_size=8,
                              micro_batch_size=micro, residual_dropout=0.0)
        runs[processes] = _launch(config, tmp_path / f"p{processes}.json", processes)
    one, two = runs[1], runs[2]
    assert (one["world_size"], two["world_size"], two["backend"]) == (1, 2, "gloo")
    assert one["global_step"] == two["global_step"] == 4
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor(two["grad_norms"]), torch.tensor(one["grad_norms"]), rtol=1e-4, atol=0)
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-5)
    assert all(rate and rate > 0 for rate in two["tokens_per_s"])

    final = [complete_checkpoints(tmp_path / f"p{n}")[-1] for n in (1, 2)]
    assert [c.name for c in final] == ["checkpoint-4", "checkpoint-4"]
    expected, got = (load_file(str(c / "model.safetensors")) for c in final)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5, msg=name)


@pytest.mark.slow  # ~95 s on 2 cores; test_two_cpu_processes_match_one_process stays in the default run
def test_two_processes_resume_mid_epoch_like_an_uninterrupted_run(lima_path, base_tokenizer, tmp_path):
    # SIGTERM in both processes at step 2: step 3 (the middle of epoch 2) is saved and the run stops; resumed, it
    # must see the rest of epoch 2's shuffle, not epoch 1's again (the sampler sits under DDP's resume wrappers)
    runs = {}
    for name in ("full", "termed"):
        config = small_config(lima_path, tmp_path / name, max_examples=16, epochs=2, batch_size=8,
                              micro_batch_size=2, residual_dropout=0.0)
        runs[name] = tmp_path / f"{name}.json"
        runs[name].write_text(json.dumps({**dataclasses.asdict(config), "lora": {}}))
    _launch(None, runs["full"], 2)
    termed = _launch(None, runs["termed"], 2, "--term-at", "2")
    assert termed["interrupted"] is True
    assert complete_checkpoints(tmp_path / "termed")[-1].name == "checkpoint-3"
    _launch(None, runs["termed"], 2, "--resume")
    final = [complete_checkpoints(tmp_path / n)[-1] for n in ("full", "termed")]
    assert [c.name for c in final] == ["checkpoint-4", "checkpoint-4"]
    expected, got = (load_file(str(c / "model.safetensors")) for c in final)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)
