"""Every YAML under ``configs/`` loads as the typed config of its folder, and survives a dump/load round trip;
the launch configs under ``configs/accelerate/`` load as accelerate reads them and agree with lima-align's."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import yaml

from lima_align.config import dump_yaml, load_config
from lima_align.curate.mix import MixConfig
from lima_align.evaluate.judge_config import JudgeConfig
from lima_align.generate.icl import ICLPrompt
from lima_align.pipeline.ablate import AblationConfig
from lima_align.pipeline.run import RunConfig
from lima_align.train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
KINDS = {"train": TrainConfig, "runs": RunConfig, "ablations": AblationConfig, "judges": JudgeConfig,
         "mix": MixConfig, "icl": ICLPrompt}
LAUNCH = "accelerate"  # accelerate / DeepSpeed launch configs, a multi-node guide and a Slurm script
LAUNCH_SUFFIXES = {".yaml", ".json", ".md", ".sbatch"}
SHIPPED = sorted(p for p in CONFIGS.rglob("*") if p.is_file())
TYPED = [p for p in SHIPPED if p.parent.name != LAUNCH]
LAUNCH_FILES = [p for p in SHIPPED if p.parent.name == LAUNCH]


def test_configs_are_grouped_by_kind():
    assert {p.relative_to(CONFIGS).parts[0] for p in SHIPPED} == set(KINDS) | {LAUNCH}
    assert all(len(p.relative_to(CONFIGS).parts) == 2 for p in SHIPPED)
    assert all(p.suffix == ".yaml" for p in TYPED)
    assert all(p.suffix in LAUNCH_SUFFIXES for p in LAUNCH_FILES)
    assert len([p for p in SHIPPED if p.parent.name == "train"]) >= 4  # lima, 7b, 65b, demo-cpu
    assert {p.name for p in LAUNCH_FILES} >= {"fsdp2.yaml", "zero3.yaml", "zero3.json", "multinode.md",
                                              "slurm.sbatch"}


@pytest.mark.parametrize("path", TYPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_yaml_loads_as_its_kind(path, tmp_path, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)  # run and ablation configs name other configs relative to the repository
    kind = KINDS[path.parent.name]
    config = load_config(kind, path)
    assert isinstance(config, kind)
    again = tmp_path / "again.yaml"
    again.write_text(dump_yaml(config), encoding="utf-8")
    assert load_config(kind, again) == config


@pytest.mark.parametrize("path", [p for p in LAUNCH_FILES if p.suffix == ".yaml"], ids=lambda p: p.name)
def test_every_launch_yaml_loads_as_accelerate_reads_it(path, monkeypatch):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    monkeypatch.chdir(CONFIGS.parent)  # zero3.yaml names its JSON relative to the repository
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    cluster = load_config_from_file(str(path))
    assert isinstance(cluster, ClusterConfig) and cluster.num_machines == 1 and cluster.use_cpu is False
    assert set(raw) <= set(ClusterConfig.__dataclass_fields__)  # nothing accelerate would ignore
    if path.name == "zero3.yaml":
        assert Path(cluster.deepspeed_config["deepspeed_config_file"]).is_file()


def test_fsdp2_yaml_is_lima_aligns_fsdp2_strategy_and_a_valid_plugin():
    from accelerate.utils import FullyShardedDataParallelPlugin
    from transformers import TrainingArguments

    from lima_align.train.sharding import FSDP2_CONFIG

    fsdp = yaml.safe_load((CONFIGS / LAUNCH / "fsdp2.yaml").read_text())["fsdp_config"]
    assert {key.removeprefix("fsdp_"): value for key, value in fsdp.items()} == FSDP2_CONFIG
    # strategy=fsdp2 (torchrun) passes the same settings through TrainingArguments; accelerate accepts them
    with mock.patch.dict(os.environ):  # both export FSDP_* variables: keep them out of the other tests
        arguments = TrainingArguments(output_dir="/tmp/unused", fsdp=True, fsdp_config=dict(FSDP2_CONFIG),
                                      use_cpu=True, report_to="none")
        plugin = FullyShardedDataParallelPlugin(**arguments.fsdp_plugin_args)
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert "SHARDED_STATE_DICT" in str(plugin.state_dict_type) and plugin.cpu_ram_efficient_loading


def test_zero3_json_is_lima_aligns_zero3_strategy():
    from lima_align.train.sharding import ZERO3_CONFIG

    shipped = json.loads((CONFIGS / LAUNCH / "zero3.json").read_text())
    assert shipped == ZERO3_CONFIG and shipped["zero_optimization"]["stage"] == 3
    # whole weights in every kept checkpoint (from_pretrained loads them without zero_to_fp32.py)
    assert shipped["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_multinode_guide_and_slurm_script_launch_the_shipped_config():
    guide = (CONFIGS / LAUNCH / "multinode.md").read_text()
    assert "--num_machines 2" in guide and "torchrun --nnodes 2" in guide and "fsdp2.yaml" in guide
    script = CONFIGS / LAUNCH / "slurm.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0  # parses
    text = script.read_text()
    assert "#SBATCH --nodes=" in text and "--config_file configs/accelerate/fsdp2.yaml" in text
    assert "--machine_rank" in text and "--resume" in text
