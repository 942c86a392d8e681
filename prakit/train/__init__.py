"""Training utilities: learning-rate schedule, weight EMA, RNG state and checkpoints."""

from prakit.train import rng
from prakit.train.checkpoint import (
    CheckpointError,
    is_milestone,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from prakit.train.ema import EMA
from prakit.train.schedule import learning_rate

__all__ = [
    "EMA",
    "CheckpointError",
    "is_milestone",
    "latest_checkpoint",
    "learning_rate",
    "list_checkpoints",
    "load_checkpoint",
    "rng",
    "save_checkpoint",
]
