"""Run a tiny training in a fresh process, optionally killing itself (SIGKILL / SIGTERM) at a given step.

Used by test_end_to_end.py: ``python _runner.py CONFIG_JSON [--resume] [--kill-at N] [--term-at N]``, and by
test_distributed.py under ``accelerate launch --cpu --num_processes 2 _runner.py CONFIG_JSON``: every process
builds the same tiny model (fixed seed); only rank 0 prints the result line (JSON, with the logged losses).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import tiny_llama  # noqa: E402

from lima_align.config import from_dict  # noqa: E402
from lima_align.models import load_tokenizer  # noqa: E402
from lima_align.train import TrainConfig, train  # noqa: E402


class Suicide(TrainerCallback):
    def __init__(self, step: int, sig: int):
        self.step, self.sig = step, sig

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), self.sig)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--term-at", type=int)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = from_dict(TrainConfig, json.loads(Path(args.config).read_text()))
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    callbacks = []
    if args.kill_at:
        callbacks.append(Suicide(args.kill_at, signal.SIGKILL))
    if args.term_at:
        callbacks.append(Suicide(args.term_at, signal.SIGTERM))
    result = train(config, resume=args.resume, model=tiny_llama(len(tokenizer)), tokenizer=tokenizer,
                   callbacks=callbacks, log=lambda s: None)
    if os.environ.get("RANK", "0") == "0":
        logged = [h for h in result.log_history if "loss" in h]
        dist = torch.distributed.is_initialized()
        print(json.dumps({"interrupted": result.interrupted, "global_step": result.global_step,
                          "losses": [h["loss"] for h in logged], "grad_norms": [h["grad_norm"] for h in logged],
                          "tokens_per_s": [h.get("tokens_per_s") for h in logged], "train_loss": result.train_loss,
                          "world_size": torch.distributed.get_world_size() if dist else 1,
                          "backend": torch.distributed.get_backend() if dist else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
