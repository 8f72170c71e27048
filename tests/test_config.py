"""The typed config loader, and every shipped YAML preset loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lima_align.config import ConfigError, dump_yaml, load_config
from lima_align.train import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    config = load_config(TrainConfig, path)
    assert isinstance(config, TrainConfig)
    assert load_config(TrainConfig, None, _overrides_of(dump_yaml(config))) is not None


def _overrides_of(text):
    import yaml

    flat = []
    for key, value in yaml.safe_load(text).items():
        if isinstance(value, dict):
            flat += [f"{key}.{k}={v}" for k, v in value.items()]
        elif value is not None:
            flat.append(f"{key}={value}")
    return flat


def test_lima_yaml_is_the_paper_recipe():
    assert load_config(TrainConfig, "configs/train/lima.yaml") == TrainConfig()
    paper = TrainConfig()
    assert (paper.epochs, paper.lr, paper.lr_end, paper.beta1, paper.beta2, paper.weight_decay) == \
        (15, 1e-5, 1e-6, 0.9, 0.95, 0.1)
    assert (paper.batch_size, paper.max_len, paper.residual_dropout) == (32, 2048, 0.3)
    small = load_config(TrainConfig, "configs/train/lima-7b.yaml")
    assert (small.batch_size, small.residual_dropout) == (64, 0.2)


def test_overrides_are_typed_and_nested():
    config = load_config(TrainConfig, None, ["epochs=3", "lr=2e-5", "batching=padded", "lora.enabled=true",
                                             "lora.r=8", "max_examples=none"])
    assert config.epochs == 3 and config.lr == 2e-5 and config.batching == "padded"
    assert config.lora.enabled is True and config.lora.r == 8 and config.max_examples is None


@pytest.mark.parametrize("override, message", [
    ("epoch=3", "unknown key 'epoch'"),
    ("epochs=three", "'epochs' expects int"),
    ("lora.rank=3", "unknown key 'lora.rank'"),
    ("tensorboard=maybe", "'tensorboard' expects bool"),
    ("train_on=everything", "train_on must be"),
    ("batching=sorted", "batching must be one of auto, packed, rebalance, padded"),
    ("mixed_precision=fp8", "mixed_precision must be one of auto, bf16, no"),
    ("novalue", "expected key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, [override])


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(TrainConfig, bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(TrainConfig, tmp_path / "missing.yaml")


@dataclass
class _Inner:
    names: list[str] = field(default_factory=list)
    ratio: float = 0.5


@dataclass
class _Outer:
    title: str = "x"
    inner: _Inner = field(default_factory=_Inner)


def test_generic_loader_for_other_stages(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("title: 123\ninner:\n  names: [a, b]\n")
    config = load_config(_Outer, path, ["inner.ratio=0.25", "inner.names=a,b,c"])
    assert config.title == "123" and config.inner.names == ["a", "b", "c"] and config.inner.ratio == 0.25
