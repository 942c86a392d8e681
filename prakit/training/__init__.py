"""Training utilities: learning-rate schedule, weight EMA, RNG state and checkpoints."""

from prakit.training import rng
from prakit.training.checkpoint import (
    CheckpointError,
    is_milestone,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from prakit.training.ema import EMA
from prakit.training.schedule import learning_rate

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
