"""``lima-align train`` parses; the library computes (config resolution is tested without training)."""

from __future__ import annotations

import argparse

from lima_align.cli import train as train_cli
from lima_align.train.options import config_from_args


def _parse(argv):
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


def test_train_command_resolves_yaml_overrides_and_shortcuts():
    args = _parse(["configs/demo-cpu.yaml", "epochs=2", "lora.enabled=true", "--model", "smollm2-135m-instruct",
                   "--out", "/tmp/x"])
    assert args.func is train_cli.handle
    config = config_from_args(args.config, args.overrides, data=args.data, model=args.model, out=args.out)
    assert config.epochs == 2 and config.lora.enabled and config.model == "smollm2-135m-instruct"
    assert config.out == "/tmp/x" and config.max_examples == 64


def test_module_entry_point_parses(monkeypatch):
    from lima_align.train import __main__ as entry

    seen = {}
    monkeypatch.setattr(entry, "train", lambda config, resume: seen.update(config=config, resume=resume) or
                        type("R", (), {"global_step": 0, "train_loss": 0.0})())
    assert entry.main(["configs/lima.yaml", "epochs=1", "--resume"]) == 0
    assert seen["config"].epochs == 1 and seen["resume"] is True
    assert entry.main(["configs/lima.yaml", "nonsense=1"]) == 2
