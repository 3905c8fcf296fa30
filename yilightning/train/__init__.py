"""Training: the pre-training loop, its schedule and checkpoints."""

from yilightning.train.checkpoint import CheckpointWriter, load_latest
from yilightning.train.pretrain import PretrainConfig, build_model, pretrain
from yilightning.train.schedule import ScheduleConfig, lr_at

__all__ = ["CheckpointWriter", "PretrainConfig", "ScheduleConfig", "build_model", "load_latest", "lr_at", "pretrain"]
