"""Every YAML under ``configs/`` loads as the typed config of its folder, and survives a dump/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from lima_align.config import dump_yaml, load_config
from lima_align.curate.mix import MixConfig
from lima_align.evaluate.judge_config import JudgeConfig
from lima_align.pipeline.ablate import AblationConfig
from lima_align.pipeline.run import RunConfig
from lima_align.train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
KINDS = {"train": TrainConfig, "runs": RunConfig, "ablations": AblationConfig, "judges": JudgeConfig,
         "mix": MixConfig}
SHIPPED = sorted(p for p in CONFIGS.rglob("*") if p.is_file())


def test_configs_are_grouped_by_kind():
    assert {p.relative_to(CONFIGS).parts[0] for p in SHIPPED} == set(KINDS)
    assert all(p.suffix == ".yaml" and len(p.relative_to(CONFIGS).parts) == 2 for p in SHIPPED)
    assert len([p for p in SHIPPED if p.parent.name == "train"]) >= 4  # lima, 7b, 65b, demo-cpu


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_yaml_loads_as_its_kind(path, tmp_path, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)  # run and ablation configs name other configs relative to the repository
    kind = KINDS[path.parent.name]
    config = load_config(kind, path)
    assert isinstance(config, kind)
    again = tmp_path / "again.yaml"
    again.write_text(dump_yaml(config), encoding="utf-8")
    assert load_config(kind, again) == config

