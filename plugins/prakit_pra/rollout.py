"""Parallel Rollout Approximation: perturb the target states, decode them, feed them as inputs."""

from typing import Any, ClassVar

import attrs
import torch
from attrs.validators import ge, in_

from prakit.components import RolloutApproximator, RolloutConfig


@attrs.frozen
class PRARolloutConfig(RolloutConfig):
    """``uniform``: sigma_i ~ U[sigma_min, sigma_max] independently per position; ``fixed``: sigma_max."""

    name: ClassVar[str] = "pra"
    sigma: str = attrs.field(default="uniform", validator=in_(("uniform", "fixed")))
    sigma_min: float = attrs.field(default=0.0, validator=ge(0.0))
    sigma_max: float = attrs.field(default=0.5, validator=ge(0.0))

    @sigma_max.validator
    def _check_range(self, attribute, value):
        if value < self.sigma_min:
            raise ValueError(f"'sigma_max' must be >= sigma_min ({self.sigma_min}): {value}")


class PRARollout(RolloutApproximator):
    """x~_i = sg(D(sg(z_i) + sigma_i eps_i)), each position independent (fully parallel)."""

    def __init__(self, cfg: PRARolloutConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, x, z, labels, *, model: Any, step: int) -> torch.Tensor:
        cfg = self.cfg
        z = z.detach()
        sigma = torch.full((*z.shape[:-1], 1), cfg.sigma_max, device=z.device, dtype=z.dtype)
        if cfg.sigma == "uniform":
            sigma = cfg.sigma_min + (cfg.sigma_max - cfg.sigma_min) * torch.rand_like(sigma)
        with torch.no_grad():
            return model.decoder.decode(z + sigma * torch.randn_like(z)).to(x.dtype)
