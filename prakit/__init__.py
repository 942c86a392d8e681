"""prakit: pixel-space autoregressive image generation with Parallel Rollout Approximation."""

from prakit.api import create_model, evaluate, export, list_models, load, sample, train
from prakit.plugins import hookimpl

__version__ = "0.1.0"
__all__ = ["create_model", "evaluate", "export", "hookimpl", "list_models", "load", "sample", "train", "__version__"]
