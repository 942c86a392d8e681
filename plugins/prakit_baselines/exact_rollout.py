"""Exact (on-policy) rollout: the backbone reads the model's own tokens, drawn as inference draws them."""

from typing import ClassVar

import attrs
import torch
from attrs.validators import ge, gt, in_, le, optional

from prakit.plugin_api import RolloutApproximator, RolloutConfig, RolloutModel


def _check_window(instance, attribute, value) -> None:
    if value != "rest" and not (isinstance(value, int) and value > 0):
        raise ValueError(f"'window' must be a positive number of tokens or \"rest\", got {value!r}")


@attrs.frozen
class ExactRolloutConfig(RolloutConfig):
    """On a training step (with ``probability``), the first ``fraction`` of the batch rolls out:
    after a ground-truth prefix of random length (at least ``min_prefix`` tokens), the backbone
    reads a ``window`` of the model's own tokens, each drawn from the rolled prefix before it, so
    errors accumulate as at inference; ``"rest"`` rolls to the end of the sequence, a number rolls
    that many tokens and reads the ground truth after them. ``starts``: ``per_row`` draws each
    row's prefix length, ``aligned`` one for the whole batch. Tokens are drawn as inference draws
    them: the run's ``sample`` settings, with ``head_steps`` (if set) in place of its head steps.
    Before step ``warmup`` every input is the ground truth: an untrained model's own tokens are noise."""

    name: ClassVar[str] = "exact_rollout"
    probability: float = attrs.field(default=1.0, validator=[ge(0.0), le(1.0)])
    fraction: float = attrs.field(default=1.0, validator=[ge(0.0), le(1.0)])
    window: int | str = attrs.field(default="rest", validator=_check_window)
    starts: str = attrs.field(default="per_row", validator=in_(("per_row", "aligned")))
    min_prefix: int = attrs.field(default=1, validator=ge(0))
    head_steps: int | None = attrs.field(default=None, validator=optional(gt(0)))
    warmup: int = attrs.field(default=0, validator=ge(0))

    def rolled_share(self, seq_len: int) -> float:
        """The expected share of the ``seq_len - 1`` token inputs that are the model's own, after the warm-up."""
        inputs = seq_len - 1  # the last token is never an input
        if self.min_prefix >= inputs:
            return 0.0
        starts = range(self.min_prefix, inputs)
        rolled = sum(min(self.window_length(inputs), inputs - start) for start in starts) / len(starts)
        return self.probability * self.fraction * rolled / inputs

    def window_length(self, inputs: int) -> int:
        return inputs if self.window == "rest" else self.window


class ExactRollout(RolloutApproximator):
    """x~ = the ground truth with windows of the model's own tokens, drawn with the KV cache after
    each row's ground-truth prefix (read in one parallel pass), without gradient."""

    def __init__(self, cfg: ExactRolloutConfig):
        super().__init__()
        self.cfg = cfg
        self.share = float("nan")

    def forward(self, x, z, labels, *, model: RolloutModel, step: int) -> torch.Tensor:
        cfg = self.cfg
        rows = round(cfg.fraction * x.shape[0])
        inputs = x.shape[1] - 1  # the last token is never an input, so it is never drawn
        if step < cfg.warmup or rows == 0 or cfg.min_prefix >= inputs or torch.rand(()) >= cfg.probability:
            self.share = 0.0
            return x
        shape = (rows,) if cfg.starts == "per_row" else ()
        starts = torch.randint(cfg.min_prefix, inputs, shape).expand(rows)  # on the host: they steer the loop
        ends = (starts + cfg.window_length(inputs)).clamp_max(inputs)
        options = model.sampling if cfg.head_steps is None else attrs.evolve(model.sampling, steps=cfg.head_steps)
        was_training = model.training
        model.train(False)
        try:
            rolled = model.sample_tokens(labels[:rows], options, prefix=x[:rows], prefix_lengths=starts,
                                         length=int(ends.max()))
        finally:
            model.train(was_training)
        positions = torch.arange(rolled.shape[1])
        own = (positions >= starts[:, None]) & (positions < ends[:, None])  # (rows, positions)
        out = x.clone()
        out[:rows, : rolled.shape[1]] = torch.where(own[..., None].to(x.device), rolled.to(x.dtype),
                                                    x[:rows, : rolled.shape[1]])
        self.share = float(own.sum()) / (x.shape[0] * inputs)
        return out

    def measurements(self) -> dict[str, float]:
        """``rolled_share``: the share of the latest batch's token inputs that were the model's own."""
        return {"rolled_share": self.share}
