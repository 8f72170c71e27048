"""Run a tiny training in a fresh process, optionally killing itself (SIGKILL / SIGTERM) at a given step.

Used by test_end_to_end.py: ``python _runner.py CONFIG_JSON [--resume] [--kill-at N] [--term-at N]``, by
test_distributed.py under torchrun, and by test_sharded.py under ``accelerate launch --config_file
configs/accelerate/fsdp2.yaml`` or ``zero3.yaml``. ``--tied``: tied embeddings; ``--probe``: report what the
processes trained (sharded layers, the EOT rows as every rank holds them, residual dropout on the sharded
modules, the files of each checkpoint). Every process builds the same tiny model (fixed seed), or loads
config.model (``--load``); only rank 0 prints the result line (JSON, with the logged losses).
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
from lima_align.train.run import end_distributed  # noqa: E402


class Probe(TrainerCallback):
    """Facts about the model the Trainer trains, read on every rank (gathering a DTensor is a collective)."""

    def __init__(self, old_vocab: int):
        self.old_vocab = old_vocab
        self.facts: dict = {}
        self.zero_shares: list[float] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from torch.distributed.fsdp import FSDPModule
        from torch.distributed.tensor import DTensor

        from lima_align.train.dropout import decoder_layers

        layers = decoder_layers(model)
        embedding = model.get_input_embeddings()
        embedding = getattr(embedding, "original_module", None) or embedding  # under peft's trainable tokens
        weight = embedding.weight
        if hasattr(weight, "ds_id"):  # a ZeRO-3 partition: gather it
            import deepspeed

            with deepspeed.zero.GatheredParameters([weight]):
                full = weight.detach().clone()
        else:
            full = weight.full_tensor() if isinstance(weight, DTensor) else weight.detach()
        mean = full[:self.old_vocab].mean(0)
        top = layers[-1].mlp
        self.facts = {"sharded_layers": all(isinstance(layer, FSDPModule) for layer in layers),
                      "sharded_root": isinstance(model, FSDPModule), "dtensor": isinstance(weight, DTensor),
                      "rows": full.shape[0], "new_rows_max_err": float((full[self.old_vocab:] - mean).abs().max()),
                      "tied": model.get_output_embeddings().weight is weight,
                      "dropout_hooks": sum("_dropout_hook" in getattr(hook, "__qualname__", "")
                                           for hook in top._forward_hooks.values())}
        top.register_forward_hook(self._record)  # runs after the dropout hook, on its output

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():  # after the completion marker and the policy
            self.facts.setdefault("saved", {})[state.global_step] = sorted(p.name for p in folder.iterdir())

    def _record(self, module, args, output):
        if module.training:
            self.zero_shares.append(float((output == 0).float().mean()))


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
    parser.add_argument("--tied", action="store_true")
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--load", action="store_true", help="load config.model with from_pretrained (a folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = from_dict(TrainConfig, json.loads(Path(args.config).read_text()))
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    callbacks: list = []
    probe = Probe(len(tokenizer)) if args.probe else None
    if probe:
        callbacks.append(probe)
    if args.kill_at:
        callbacks.append(Suicide(args.kill_at, signal.SIGKILL))
    if args.term_at:
        callbacks.append(Suicide(args.term_at, signal.SIGTERM))
    given = {} if args.load else {"model": tiny_llama(len(tokenizer), tied=args.tied), "tokenizer": tokenizer}
    result = train(config, resume=args.resume, callbacks=callbacks, log=lambda s: None, **given)
    if os.environ.get("RANK", "0") == "0":
        logged = [h for h in result.log_history if "loss" in h]
        dist = torch.distributed.is_initialized()
        print(json.dumps({"interrupted": result.interrupted, "global_step": result.global_step,
                          "losses": [h["loss"] for h in logged], "grad_norms": [h["grad_norm"] for h in logged],
                          "tokens_per_s": [h.get("tokens_per_s") for h in logged], "train_loss": result.train_loss,
                          "world_size": torch.distributed.get_world_size() if dist else 1,
                          "backend": torch.distributed.get_backend() if dist else None,
                          "probe": {**probe.facts, "zero_shares": probe.zero_shares} if probe else None}))
    end_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
