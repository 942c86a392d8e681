"""Evaluators that read the model or real images: class consistency, the linear probe, the
rollout gap, the decoder's reconstruction PSNR and the sampling speed."""

from __future__ import annotations

import time
from typing import ClassVar, Iterator

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from attrs.validators import ge, gt, lt, optional

from prakit.plugin_api import (
    Curve,
    Evaluator,
    EvaluatorConfig,
    FeatureNetworkConfig,
    PrakitError,
    held_out_split,
    sample_generators,
    spread,
    to_model_input,
    to_uint8,
)
from prakit_eval.featnet import FeatNetConfig


def real_batches(ctx, count: int, batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """``(indices, images, labels)`` of ``count`` real images spread over ``ctx.real``, as model inputs on the device."""
    indices = spread(len(ctx.real), count)
    for start in range(0, len(indices), batch_size):
        rows = indices[start:start + batch_size]
        images, labels = ctx.real.read(rows)
        yield rows, to_model_input(torch.from_numpy(images), ctx.device), torch.from_numpy(labels).to(ctx.device)


@attrs.frozen
class ClassConsistencyConfig(EvaluatorConfig):
    """``features``: a classifier of the dataset's own classes (None: the evaluation's feature
    network when it is featnet, so one fit serves both, else featnet's defaults)."""

    name: ClassVar[str] = "class_consistency"
    features: FeatureNetworkConfig | None = None


class ClassConsistency(Evaluator):
    """Share of class-conditional samples a classifier of the dataset's classes assigns to the class asked for."""

    higher_is_better = {"class_consistency": True, "classifier_accuracy": True}

    def evaluate(self, ctx) -> dict[str, float]:
        cfg = self.cfg.features or classifier_default(ctx.default_features)
        network = ctx.network(cfg)
        if not network.predicts_labels:
            raise PrakitError(f"class_consistency needs a classifier of the dataset's own classes; {cfg.name!r} "
                              "is not one: leave its features unset (featnet)")
        samples = ctx.features("samples", cfg)
        numbers = {"class_consistency": float(np.mean(np.argmax(samples.logits, 1) == samples.labels))}
        accuracy = network.describe().get("held_out_accuracy")
        return numbers if accuracy is None else {**numbers, "classifier_accuracy": float(accuracy)}


def classifier_default(features: FeatureNetworkConfig) -> FeatureNetworkConfig:
    """The evaluation's feature network if it is featnet (a classifier of the dataset's classes), else featnet."""
    return features if isinstance(features, FeatNetConfig) else FeatNetConfig()


@attrs.frozen
class LinearProbeConfig(EvaluatorConfig):
    """Backbone features after block ``layer`` (None: the middle one), averaged over the tokens of
    ``num`` real images read with the null class; a linear classifier fitted on all but a
    ``held_out`` fraction (L-BFGS, L2 ``weight_decay``), top-1 on the rest."""

    name: ClassVar[str] = "linear_probe"
    layer: int | None = attrs.field(default=None, validator=optional(gt(0)))
    num: int = attrs.field(default=10_000, validator=gt(1))
    held_out: float = attrs.field(default=0.2, validator=[gt(0.0), lt(1.0)])
    weight_decay: float = attrs.field(default=1e-4, validator=ge(0.0))
    batch_size: int = attrs.field(default=256, validator=gt(0))
    seed: int = attrs.field(default=0, validator=ge(0))


class LinearProbe(Evaluator):
    """Top-1 accuracy of a linear classifier on mean-pooled backbone features of real images."""

    higher_is_better = {"linear_probe": True}

    @torch.no_grad()
    def evaluate(self, ctx) -> dict[str, float]:
        cfg, model = self.cfg, ctx.model
        layer = cfg.layer or max(1, model.backbone.depth // 2)
        features, labels = [], []
        for _, images, y in real_batches(ctx, cfg.num, cfg.batch_size):
            tokens = model.patchify(images)[:, :-1]
            h = model.backbone.hidden_states(tokens, torch.full_like(y, model.null_class), layer)
            features.append(h[:, 1:].float().mean(1).cpu())  # position 0 has read no pixel yet
            labels.append(y.cpu())
        x, y = torch.cat(features), torch.cat(labels)
        train, test = map(torch.from_numpy, held_out_split(len(y), cfg.held_out, cfg.seed))
        accuracy = probe_accuracy(x[train], y[train], x[test], y[test], weight_decay=cfg.weight_decay)
        return {"linear_probe": accuracy, "linear_probe_layer": float(layer)}


def probe_accuracy(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                   *, weight_decay: float = 1e-4, iterations: int = 200) -> float:
    """Fit multinomial logistic regression on standardised features (L-BFGS); top-1 accuracy on the test set."""
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    classes = int(max(y_train.max(), y_test.max())) + 1
    linear = torch.nn.Linear(x_train.shape[1], classes, dtype=x_train.dtype)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(x_train), y_train) + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return (linear(x_test).argmax(1) == y_test).float().mean().item()


@attrs.frozen
class RolloutGapConfig(EvaluatorConfig):
    """``num`` real images; head ``steps`` and ``temperature`` (None: the sampling options'); unguided."""

    name: ClassVar[str] = "rollout_gap"
    num: int = attrs.field(default=256, validator=gt(0))
    steps: int | None = attrs.field(default=None, validator=optional(gt(0)))
    temperature: float | None = attrs.field(default=None, validator=optional(gt(0.0)))
    batch_size: int = attrs.field(default=64, validator=gt(0))
    seed: int = attrs.field(default=0, validator=ge(0))


class RolloutGap(Evaluator):
    """Per-position error of the model reading the true tokens versus reading its own: the train-inference gap."""

    higher_is_better = {"rollout_gap": False, "rollout_gap_relative": False}
    compared_curves = {"rollout_gap": Curve(
        "rollout gap (error reading own tokens - reading true ones)", "gap",
        lambda curves: [own - truth for own, truth in zip(curves["error_reading_own"], curves["error_reading_truth"])])}

    @torch.no_grad()
    def evaluate(self, ctx) -> dict[str, float | list[float]]:
        cfg, model, options = self.cfg, ctx.model, ctx.sample_options
        steps = cfg.steps or options.steps
        temperature = cfg.temperature or options.temperature
        true_error, own_error, n = torch.zeros(model.seq_len), torch.zeros(model.seq_len), 0
        for indices, images, labels in real_batches(ctx, cfg.num, cfg.batch_size):
            x = model.patchify(images)

            def predict(inputs: torch.Tensor) -> torch.Tensor:
                """Every position's generated token after reading ``inputs``, with the same noise each call."""
                h = model.backbone(inputs[:, :-1], labels)
                z = model.generator.sample(h, steps=steps, temperature=temperature,
                                           rng=sample_generators(cfg.seed, indices.tolist()))
                return model.states_to_tokens(z).float()

            from_truth = predict(x)
            from_own = predict(from_truth.to(x.dtype))  # token i read as the model generated it from the truth
            true_error += (from_truth - x.float()).square().mean(-1).sum(0).cpu()
            own_error += (from_own - x.float()).square().mean(-1).sum(0).cpu()
            n += len(indices)
        true_error, own_error = true_error / n, own_error / n
        gap = float((own_error - true_error).mean())
        return {"rollout_gap": gap, "rollout_gap_relative": gap / max(float(true_error.mean()), 1e-12),
                "error_reading_truth": true_error.tolist(), "error_reading_own": own_error.tolist()}


@attrs.frozen
class ReconstructionPSNRConfig(EvaluatorConfig):
    """``num`` real images through the pixel decoder's encoder and decoder."""

    name: ClassVar[str] = "reconstruction_psnr"
    num: int = attrs.field(default=1000, validator=gt(0))
    batch_size: int = attrs.field(default=256, validator=gt(0))


class ReconstructionPSNR(Evaluator):
    """Mean per-image PSNR (dB, 8-bit) of decode(encode(x)) against x; inf for a lossless decoder."""

    higher_is_better = {"reconstruction_psnr": True}

    @torch.no_grad()
    def evaluate(self, ctx) -> dict[str, float]:
        model, psnrs = ctx.model, []
        for _, images, _ in real_batches(ctx, self.cfg.num, self.cfg.batch_size):
            x = model.patchify(images)
            rebuilt = model.unpatchify(model.decoder.decode(model.decoder.encode(x)))
            error = (to_uint8(rebuilt).float() - to_uint8(images).float()).square().flatten(1).mean(1)
            psnrs.append(10 * torch.log10(255.0**2 / error))  # error 0 gives inf
        return {"reconstruction_psnr": float(torch.cat(psnrs).mean())}


@attrs.frozen
class SamplingSpeedConfig(EvaluatorConfig):
    """Images per second at ``batch_size``, ``steps`` and guidance ``cfg_scale`` (None: the sampling
    options'), timed over ``batches`` batches after one warm-up batch."""

    name: ClassVar[str] = "sampling_speed"
    batch_size: int = attrs.field(default=64, validator=gt(0))
    batches: int = attrs.field(default=3, validator=gt(0))
    steps: int | None = attrs.field(default=None, validator=optional(gt(0)))
    cfg_scale: float | None = attrs.field(default=None, validator=optional(ge(0.0)))


class SamplingSpeed(Evaluator):
    """Images per second and seconds per image of the model's sampler on the evaluation's device."""

    higher_is_better = {"images_per_s": True, "s_per_image": False}
    deterministic = False

    @torch.no_grad()
    def evaluate(self, ctx) -> dict[str, float]:
        cfg, model = self.cfg, ctx.model
        changes = {k: v for k, v in (("steps", cfg.steps), ("cfg_scale", cfg.cfg_scale)) if v is not None}
        options = attrs.evolve(ctx.sample_options, **changes)
        labels = torch.arange(cfg.batch_size, device=ctx.device) % model.num_classes
        timings = []
        for batch in range(cfg.batches + 1):
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            start = time.perf_counter()
            model.sample(labels, options, rng=sample_generators(batch, range(cfg.batch_size)))
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            timings.append(time.perf_counter() - start)
        seconds = float(np.median(timings[1:]))  # the first batch warms up
        return {"images_per_s": cfg.batch_size / seconds, "s_per_image": seconds / cfg.batch_size}
