"""Parallel Rollout Approximation: perturb the target states, decode them, feed them as inputs."""

import math
import warnings
from typing import ClassVar

import attrs
import torch
from attrs.validators import ge, gt, in_, le

from prakit.plugin_api import RolloutApproximator, RolloutConfig, RolloutModel


@attrs.frozen
class PRARolloutConfig(RolloutConfig):
    """``uniform``: sigma_i ~ U[sigma_min, sigma_max] independently per position; ``fixed``:
    sigma_max; ``calibrated``: sigma = calib_scale x the head's measured per-dimension sampling
    error, kept within [sigma_min, sigma_max], re-measured every ``calib_every`` steps from step
    ``calib_warmup`` on ``calib_tokens`` teacher-forced tokens with ``calib_steps`` head steps
    (sigma_max until the first measurement: an untrained head's error says nothing). A calibrated
    sigma measures ``measured_error``, ``sigma`` and ``sigma_clamped`` (1 when the measurement
    falls outside [sigma_min, sigma_max], which it then says once in a warning)."""

    name: ClassVar[str] = "pra"
    sigma: str = attrs.field(default="uniform", validator=in_(("uniform", "fixed", "calibrated")))
    sigma_min: float = attrs.field(default=0.0, validator=ge(0.0))
    sigma_max: float = attrs.field(default=0.5, validator=ge(0.0))
    calib_scale: float = attrs.field(default=1.0, validator=gt(0.0))
    calib_every: int = attrs.field(default=10, validator=gt(0))
    calib_warmup: int = attrs.field(default=1000, validator=ge(0))
    calib_tokens: int = attrs.field(default=64, validator=gt(0))
    calib_steps: int = attrs.field(default=10, validator=gt(0))
    calib_momentum: float = attrs.field(default=0.9, validator=[ge(0.0), le(1.0)])

    @sigma_max.validator
    def _check_range(self, attribute, value):
        if value < self.sigma_min:
            raise ValueError(f"'sigma_max' must be >= sigma_min ({self.sigma_min}): {value}")


class PRARollout(RolloutApproximator):
    """x~_i = sg(D(sg(z_i) + sigma_i eps_i)), each position independent (fully parallel); the
    perturbed state becomes a token the way a generated one does (``states_to_tokens``)."""

    def __init__(self, cfg: PRARolloutConfig):
        super().__init__()
        self.cfg = cfg
        # Running estimate of the head's sampling error; NaN until first measured.
        self.register_buffer("measured_sigma", torch.tensor(float("nan")))
        self.warned_of_clamp = False

    def forward(self, x, z, labels, *, model: RolloutModel, step: int) -> torch.Tensor:
        cfg, z = self.cfg, z.detach()
        if cfg.sigma == "calibrated" and self.training and step >= cfg.calib_warmup and step % cfg.calib_every == 0:
            self.calibrate(x, z, labels, model)
        with torch.no_grad():
            return model.states_to_tokens(z + self.sigma(z) * torch.randn_like(z)).to(x.dtype)

    def sigma(self, z: torch.Tensor) -> torch.Tensor:
        """Per-position noise scales (..., L, 1)."""
        cfg = self.cfg
        shape = (*z.shape[:-1], 1)
        if cfg.sigma == "uniform":
            return cfg.sigma_min + (cfg.sigma_max - cfg.sigma_min) * torch.rand(shape, device=z.device, dtype=z.dtype)
        if cfg.sigma == "calibrated":
            return self.calibrated_sigma().to(z.dtype).expand(shape)
        return torch.full(shape, cfg.sigma_max, device=z.device, dtype=z.dtype)

    def calibrated_sigma(self) -> torch.Tensor:
        """calib_scale x the measured error within [sigma_min, sigma_max]; sigma_max before the first
        measurement. No host sync: a tensor."""
        cfg = self.cfg
        sigma = torch.nan_to_num(cfg.calib_scale * self.measured_sigma, nan=cfg.sigma_max)
        return sigma.clamp(cfg.sigma_min, cfg.sigma_max)

    def measurements(self) -> dict[str, float]:
        cfg = self.cfg
        if cfg.sigma != "calibrated":
            return {}
        measured, sigma = self.measured_sigma.item(), self.calibrated_sigma().item()
        if math.isnan(measured):
            return {"sigma": sigma}
        wanted = cfg.calib_scale * measured
        clamped = not math.isclose(sigma, wanted, rel_tol=1e-6)
        if clamped and not self.warned_of_clamp:
            self.warned_of_clamp = True
            bound = "sigma_max" if wanted > sigma else "sigma_min"
            warnings.warn(f"calibrated PRA sigma sits on its clamp: calib_scale x the measured error is {wanted:.3g}, "
                          f"{bound} holds it at {sigma:.3g}, so sigma is fixed there (widen [sigma_min, sigma_max] "
                          "or change calib_scale to let it follow the measurement)", stacklevel=2)
        return {"measured_error": measured, "sigma": sigma, "sigma_clamped": float(clamped)}

    @torch.no_grad()
    def calibrate(self, x, z, labels, model: RolloutModel) -> None:
        """Measure the head's RMS error per state dimension on a few teacher-forced tokens."""
        cfg = self.cfg
        rows = min(x.shape[0], -(-cfg.calib_tokens // x.shape[1]))
        h = model.backbone(x[:rows, :-1], labels[:rows]).flatten(0, 1)
        target = z[:rows].flatten(0, 1)
        pick = torch.randperm(h.shape[0], device=h.device)[: cfg.calib_tokens]
        z_hat = model.generator.sample(h[pick], steps=cfg.calib_steps)
        error = (z_hat - target[pick]).float().square().mean().sqrt()
        old, m = self.measured_sigma, cfg.calib_momentum
        self.measured_sigma.copy_(torch.where(torch.isnan(old), error, m * old + (1 - m) * error))


@attrs.frozen
class SelfSampleRolloutConfig(RolloutConfig):
    """``steps`` head steps per token; each position takes the model's own token with probability
    ``mix``, from step ``warmup`` on (before it, the ground truth: the head has yet to learn).
    Measures ``replaced``, the share of positions that took the model's token."""

    name: ClassVar[str] = "pra_selfsample"
    steps: int = attrs.field(default=10, validator=gt(0))
    temperature: float = attrs.field(default=1.0, validator=gt(0.0))
    mix: float = attrs.field(default=1.0, validator=[ge(0.0), le(1.0)])
    warmup: int = attrs.field(default=0, validator=ge(0))


class SelfSampleRollout(RolloutApproximator):
    """x~_i = D(z^_i), z^_i sampled by the head from one no-grad teacher-forced pass (parallel)."""

    def __init__(self, cfg: SelfSampleRolloutConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("replaced", torch.tensor(float("nan")), persistent=False)

    @torch.no_grad()
    def forward(self, x, z, labels, *, model: RolloutModel, step: int) -> torch.Tensor:
        cfg = self.cfg
        if step < cfg.warmup:
            self.replaced.fill_(0.0)
            return x
        h = model.backbone(x[:, :-1], labels)
        z_hat = model.generator.sample(h, steps=cfg.steps, temperature=cfg.temperature)
        sampled = model.states_to_tokens(z_hat).to(x.dtype)
        take = torch.rand((*x.shape[:-1], 1), device=x.device) < cfg.mix
        self.replaced.copy_(take.float().mean())
        return torch.where(take, sampled, x)

    def measurements(self) -> dict[str, float]:
        replaced = self.replaced.item()
        return {} if math.isnan(replaced) else {"replaced": replaced}
