"""prakit: pixel-space autoregressive image generation with Parallel Rollout Approximation."""

from prakit.plugins import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
