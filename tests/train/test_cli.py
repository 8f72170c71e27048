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
    args = _parse(["configs/train/demo-cpu.yaml", "epochs=2", "lora.enabled=true", "--model", "smollm2-135m-instruct",
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
    assert entry.main(["configs/train/lima.yaml", "epochs=1", "--resume"]) == 0
    assert seen["config"].epochs == 1 and seen["resume"] is True
    assert entry.main(["configs/train/lima.yaml", "nonsense=1"]) == 2
    # stopped by SIGTERM (saved, not finished): a non-zero exit, so that a launcher's caller does not move on
    monkeypatch.setattr(entry, "train", lambda config, resume: type("R", (), {"global_step": 3, "train_loss": 1.0,
                                                                              "interrupted": True})())
    assert entry.main(["configs/train/lima.yaml"]) == 143


def test_overrides_may_follow_options_and_unknown_options_still_fail(capsys):
    import pytest

    from lima_align.cli import main

    assert main(["train", "configs/train/demo-cpu.yaml", "--out", "/tmp/x", "epochs=3", "--print-config",
                 "lora.r=4"]) == 0
    printed = capsys.readouterr().out
    assert "epochs: 3" in printed and "out: /tmp/x" in printed and "r: 4" in printed
    with pytest.raises(SystemExit):
        main(["train", "configs/train/demo-cpu.yaml", "--out", "/tmp/x", "--epochs", "3"])
    assert "unrecognized arguments: --epochs 3" in capsys.readouterr().err
