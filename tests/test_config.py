"""The typed config loader, and every shipped YAML preset loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lima_align.chat_format import ChatFormat
from lima_align.config import ConfigError, dump_yaml, from_dict, load_config
from lima_align.train import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_training_preset_is_reproduced_by_overrides(path):
    # tests/test_shipped_configs.py loads every YAML; here: a preset written as key=value overrides is the same
    config = load_config(TrainConfig, path)
    assert len(CONFIGS) >= 4 and load_config(TrainConfig, None, _overrides_of(dump_yaml(config))) == config


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
    assert (paper.batch_size, paper.chat.max_len, paper.residual_dropout) == (32, 2048, 0.3)
    assert (paper.chat.eot, paper.chat.user_prefix, paper.chat.assistant_prefix, paper.chat.train_on) == \
        ("<|eot|>", "", "", "assistant")
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
    ("train_on=everything", "train_on must be 'assistant' or 'all', got 'everything'"),
    ("chat.train_on=everything", "train_on must be 'assistant' or 'all', got 'everything'"),
    ("chat.max_len=4", "max_len must be >= 8, got 4"),
    ("chat.eot=", "eot must be a non-empty token string"),
    ("chat.max_length=64", "unknown key 'chat.max_length'"),
    ("batching=sorted", "batching must be one of auto, packed, rebalance, padded"),
    ("mixed_precision=fp8", "mixed_precision must be one of auto, bf16, no"),
    ("novalue", "expected key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, [override])


CUSTOM = ChatFormat(eot="<|end|>", user_prefix="User: ", assistant_prefix="Bot: ", train_on="all", max_len=384)


def test_chat_format_is_one_nested_section():
    config = load_config(TrainConfig, None, ["chat.eot=<|end|>", "chat.user_prefix=User: ",
                                             "chat.assistant_prefix=Bot: ", "chat.train_on=all", "chat.max_len=384"])
    assert config.chat == CUSTOM
    assert TrainConfig(chat=ChatFormat(max_len=384)).chat.max_len == 384
    assert "chat:\n  eot: <|end|>\n" in dump_yaml(config)  # printed and saved as a section
    assert load_config(TrainConfig, None, _overrides_of(dump_yaml(config))) == config


def test_legacy_flat_chat_keys_land_in_chat_with_a_notice(tmp_path, caplog):
    flat = tmp_path / "flat.yaml"
    flat.write_text("epochs: 3\neot: <|end|>\nuser_prefix: 'User: '\nassistant_prefix: 'Bot: '\n"
                    "train_on: all\nmax_len: 384\n")
    nested = tmp_path / "nested.yaml"
    nested.write_text("epochs: 3\nchat:\n  eot: <|end|>\n  user_prefix: 'User: '\n  assistant_prefix: 'Bot: '\n"
                      "  train_on: all\n  max_len: 384\n")
    with caplog.at_level("WARNING", logger="lima_align.config"):
        from_yaml = load_config(TrainConfig, flat)
    assert from_yaml == load_config(TrainConfig, nested)
    assert from_yaml.chat == CUSTOM and from_yaml.epochs == 3
    assert f"{flat}: 'max_len' is now 'chat.max_len'" in caplog.text
    overrides = ["eot=<|end|>", "user_prefix=User: ", "assistant_prefix=Bot: ", "train_on=all", "max_len=384"]
    assert load_config(TrainConfig, None, overrides).chat == CUSTOM
    assert "overrides: 'train_on' is now 'chat.train_on'" in caplog.text


def test_an_override_beats_the_yaml_in_either_spelling(tmp_path):
    flat, nested = tmp_path / "flat.yaml", tmp_path / "nested.yaml"
    flat.write_text("max_len: 384\n")
    nested.write_text("chat:\n  max_len: 384\n")
    assert load_config(TrainConfig, flat, ["chat.max_len=64"]).chat.max_len == 64
    assert load_config(TrainConfig, nested, ["max_len=64"]).chat.max_len == 64
    assert load_config(TrainConfig, nested, ["eot=<|end|>"]).chat == ChatFormat(eot="<|end|>", max_len=384)


def test_a_flat_key_merged_over_a_chat_section_wins():
    # a run recipe's train_settings (max_len: 128) merged over a train YAML's chat section, then built at once
    config = from_dict(TrainConfig, {"chat": {"eot": "<|end|>", "max_len": 2048}, "max_len": 128})
    assert config.chat == ChatFormat(eot="<|end|>", max_len=128)


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
