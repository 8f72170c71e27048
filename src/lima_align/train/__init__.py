"""Fine-tuning with the LIMA recipe: ``train(load_config(TrainConfig, "configs/train/lima.yaml"))``."""

from lima_align.train.config import LoraSettings, TrainConfig
from lima_align.train.run import prepare, train
from lima_align.train.trainer import TrainResult

__all__ = ["LoraSettings", "TrainConfig", "TrainResult", "prepare", "train"]
