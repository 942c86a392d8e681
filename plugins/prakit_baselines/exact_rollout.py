"""Exact (on-policy) rollout: the backbone reads the model's own tokens, drawn as inference draws them."""

from typing import ClassVar

import attrs
import torch
from attrs.validators import ge, gt, le, optional

from prakit.components import RolloutApproximator, RolloutConfig, RolloutModel


@attrs.frozen
class ExactRolloutConfig(RolloutConfig):
    """On a training step (with ``probability``), the first ``fraction`` of the batch reads a
    ``window`` of the model's own tokens after a ground-truth prefix of random length (at least
    ``min_prefix`` tokens), and the ground truth after them, so every input stays on the image
    its targets come from. Tokens are drawn as inference draws them: the run's ``sample``
    settings, with ``head_steps`` (if set) in place of its head steps."""

    name: ClassVar[str] = "exact_rollout"
    probability: float = attrs.field(default=1.0, validator=[ge(0.0), le(1.0)])
    fraction: float = attrs.field(default=1.0, validator=[ge(0.0), le(1.0)])
    window: int = attrs.field(default=1, validator=gt(0))
    min_prefix: int = attrs.field(default=1, validator=ge(0))
    head_steps: int | None = attrs.field(default=None, validator=optional(gt(0)))


class ExactRollout(RolloutApproximator):
    """x~ = the ground truth with a window of the model's own tokens, drawn with the KV cache
    after the ground-truth prefix, without gradient."""

    def __init__(self, cfg: ExactRolloutConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, x, z, labels, *, model: RolloutModel, step: int) -> torch.Tensor:
        cfg = self.cfg
        rows = round(cfg.fraction * x.shape[0])
        inputs = x.shape[1] - 1  # the last token is never an input, so it is never drawn
        if rows == 0 or cfg.min_prefix >= inputs or torch.rand(()) >= cfg.probability:
            return x
        start = int(torch.randint(cfg.min_prefix, inputs, ()))
        end = min(start + cfg.window, inputs)
        options = model.sampling if cfg.head_steps is None else attrs.evolve(model.sampling, steps=cfg.head_steps)
        was_training = model.training
        model.train(False)
        try:
            rolled = model.sample_tokens(labels[:rows], options, prefix=x[:rows, :start], length=end)
        finally:
            model.train(was_training)
        out = x.clone()
        out[:rows, start:end] = rolled[:, start:].to(x.dtype)
        return out
