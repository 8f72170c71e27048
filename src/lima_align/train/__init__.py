"""Fine-tuning with the LIMA recipe: ``train(load_config(TrainConfig, "configs/lima.yaml"))``."""

from lima_align.train.recipe import LoraSettings, TrainConfig
from lima_align.train.run import prepare, train
from lima_align.train.trainer import TrainResult

__all__ = ["LoraSettings", "TrainConfig", "TrainResult", "prepare", "train"]
