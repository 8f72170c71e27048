"""Training logs go to tensorboard and to any tracker transformers supports, configured from the training YAML."""

from __future__ import annotations

import pytest

from lima_align.config import load_config
from lima_align.errors import LimaError
from lima_align.train import TrainConfig
from lima_align.train.trainer import report_targets, training_arguments


def _config(tmp_path, text: str) -> TrainConfig:
    path = tmp_path / "train.yaml"
    path.write_text(f"out: {tmp_path / 'run'}\n" + text)
    return load_config(TrainConfig, path)


def test_report_to_from_the_yaml_reaches_the_training_arguments(tmp_path):
    assert report_targets(_config(tmp_path, "tensorboard: false\n")) == "none"
    assert report_targets(_config(tmp_path, "tensorboard: true\n")) == ["tensorboard"]
    only = _config(tmp_path, "tensorboard: false\nreport_to: [tensorboard]\n")
    assert training_arguments(only).report_to == ["tensorboard"]


@pytest.mark.parametrize("names,message", [("[nonsense]", "unknown nonsense; transformers reports to"),
                                           ("[wandb]", "wandb not installed")])
def test_a_tracker_that_cannot_run_is_refused_before_training(tmp_path, names, message):
    import importlib.util

    if names == "[wandb]" and importlib.util.find_spec("wandb") is not None:
        pytest.fail("wandb is installed here; pick a tracker that is not")
    with pytest.raises(LimaError, match=message):
        report_targets(_config(tmp_path, f"report_to: {names}\n"))
