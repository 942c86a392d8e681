"""The PRA model at each size, as presets (the ``model_presets`` hook), as DiT's ``DiT_models``."""

from __future__ import annotations

from typing import Any


def _pra(width: int, depth: int, heads: int, head: tuple[int, int], decoder: tuple[int, int], state_dim: int = 16):
    """The PRA model section at one size: (width, depth) of the head and of the decoder."""
    return {
        "backbone": {"name": "transformer", "width": width, "depth": depth, "heads": heads},
        "generator": {"name": "diffusion", "width": head[0], "depth": head[1], "batch_mul": 4},
        "decoder": {"name": "mlp", "state_dim": state_dim, "width": decoder[0], "depth": decoder[1]},
        "rollout": {"name": "pra", "sigma": "uniform", "sigma_min": 0.0, "sigma_max": 0.5},
    }


#: name -> the model section it stands for. ``micro`` is the tests' model (seconds on a CPU), ``tiny``
#: the CPU quickstart's (4.8M parameters with 16 tokens of 4x4x3); the pra-* sizes land within 3%
#: of the paper's 135M, 250M and 511M parameters with 16x16x3 tokens.
MODELS: dict[str, dict[str, Any]] = {
    "micro": _pra(32, 2, 2, head=(32, 2), decoder=(32, 1), state_dim=4),
    "tiny": _pra(256, 4, 4, head=(256, 3), decoder=(256, 1)),
    "pra-S": _pra(768, 12, 12, head=(1024, 6), decoder=(1024, 2)),
    "pra-B": _pra(1024, 16, 16, head=(1024, 6), decoder=(1024, 2)),
    "pra-L": _pra(1280, 24, 16, head=(1024, 6), decoder=(1024, 2)),
}

