"""Evaluators that compare the distribution of the samples with the reference's, in the space of
a feature network: FID, sFID, KID, the Inception score and precision/recall.

The numbers follow the ADM evaluation suite: FID from the float64 feature moments (a reference
file's own moments when it has them), sFID likewise from the moments of the spatial features, the
Inception score over 10 splits, and precision/recall from k-nearest-neighbour manifolds (k = 3)
of reference *image features*. The Frechet distance is prakit's own
(:func:`prakit.plugin_api.frechet_distance`); KID and the Inception score are torchmetrics'.
"""

from __future__ import annotations

import math
import warnings
from typing import ClassVar

import attrs
import numpy as np
import torch
from attrs.validators import ge, gt
from torch import nn
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from prakit.plugin_api import (
    PR_REFERENCE_IMAGES,
    Evaluator,
    EvaluatorConfig,
    FeatureNetworkConfig,
    PrakitError,
    frechet_distance,
    spread,
)


def qualified(number: str, features: FeatureNetworkConfig | None) -> str:
    """``fid`` under the evaluation's feature network, ``fid@featnet`` under one the evaluator names."""
    return number if features is None else f"{number}@{features.name}"


class Precomputed(nn.Module):
    """The 'feature extractor' torchmetrics is given: the features are computed (and cached) already."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def metric(cls, **options):
    """A torchmetrics metric over precomputed features, without its warning that it keeps them in memory."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features", category=UserWarning)
        return cls(feature=Precomputed(), **options)


def tensor(values: np.ndarray, dtype=np.float64) -> torch.Tensor:
    """A writable float64 copy of (possibly memory-mapped) features."""
    return torch.from_numpy(np.array(values, dtype))


def seeded_result(metric, seed: int, name: str) -> dict[str, float]:
    """A torchmetrics ``(mean, std)`` over random subsets drawn from ``seed``, as ``{name, name_std}``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return {name: float(mean), f"{name}_std": float(std)}


@attrs.frozen
class FIDConfig(EvaluatorConfig):
    """``features``: the feature network (None: the evaluation's, ``eval.features``)."""

    name: ClassVar[str] = "fid"
    features: FeatureNetworkConfig | None = None


class FID(Evaluator):
    """Frechet distance between the feature moments of the samples and of the reference (lower is better)."""

    higher_is_better = {"fid": False}
    in_default_set = True
    primary = "fid"
    #: Whether it compares the spatial features' moments (sFID) rather than the features'.
    spatial: ClassVar[bool] = False

    def evaluate(self, ctx) -> dict[str, float]:
        # the reference first: a file without the statistics fails before any sample is drawn
        real, fake = (ctx.moments(which, self.cfg.features, spatial=self.spatial) for which in ("reference", "samples"))
        return {qualified(self.cfg.name, self.cfg.features): frechet_distance(fake, real)}


@attrs.frozen
class SFIDConfig(FIDConfig):
    """``features``: the feature network, one with spatial features such as inception (None: the evaluation's)."""

    name: ClassVar[str] = "sfid"


class SFID(FID):
    """The ADM suite's sFID: Frechet distance between the moments of the spatial features (Inception's
    ``mixed_6/conv``, 2023 of them) of the samples and of the reference (lower is better)."""

    higher_is_better = {"sfid": False}
    in_default_set = False
    primary = None
    spatial = True

    def evaluate(self, ctx) -> dict[str, float]:
        if not ctx.network(self.cfg.features).num_spatial:  # before any sample is drawn
            raise PrakitError(f"sfid needs spatial features and the feature network "
                              f"{ctx.features_config(self.cfg.features).name!r} gives none: evaluate with inception "
                              '(eval.features, or sfid\'s own features = { name = "inception" })')
        return super().evaluate(ctx)


@attrs.frozen
class KIDConfig(EvaluatorConfig):
    """``subsets`` of ``subset_size`` features (fewer if a side has fewer), drawn from ``seed``."""

    name: ClassVar[str] = "kid"
    subsets: int = attrs.field(default=100, validator=gt(0))
    subset_size: int = attrs.field(default=1000, validator=gt(1))
    seed: int = attrs.field(default=0, validator=ge(0))
    features: FeatureNetworkConfig | None = None


class KID(Evaluator):
    """Kernel distance (unbiased squared MMD, cubic polynomial kernel) and its spread over subsets."""

    higher_is_better = {"kid": False}

    def evaluate(self, ctx) -> dict[str, float]:
        cfg = self.cfg
        fake, real = ctx.features("samples", cfg.features), ctx.features("reference", cfg.features)
        size = min(cfg.subset_size, len(fake), len(real))
        kid = metric(KernelInceptionDistance, subsets=cfg.subsets, subset_size=size)
        for features, is_real in ((fake, False), (real, True)):
            for start in range(0, len(features), 10_000):
                kid.update(tensor(features.features[start:start + 10_000]), is_real)
        return seeded_result(kid, cfg.seed, qualified("kid", cfg.features))


@attrs.frozen
class InceptionScoreConfig(EvaluatorConfig):
    """``splits`` of the samples (shuffled from ``seed``: a sample store is ordered by class)."""

    name: ClassVar[str] = "inception_score"
    splits: int = attrs.field(default=10, validator=gt(0))
    seed: int = attrs.field(default=0, validator=ge(0))
    features: FeatureNetworkConfig | None = None


class InceptionScoreEvaluator(Evaluator):
    """exp(E KL(p(y|x) || p(y))) of the network's class predictions, mean and spread over splits."""

    higher_is_better = {"inception_score": True}

    def evaluate(self, ctx) -> dict[str, float]:
        cfg = self.cfg
        logits = ctx.features("samples", cfg.features).logits
        if logits is None:
            raise PrakitError(f"inception_score needs class logits and the feature network "
                              f"{ctx.features_config(cfg.features).name!r} gives none")
        score = metric(InceptionScore, splits=cfg.splits)
        score.update(tensor(logits))
        return seeded_result(score, cfg.seed, qualified("inception_score", cfg.features))


@attrs.frozen
class PrecisionRecallConfig(EvaluatorConfig):
    """``k``-th nearest neighbour radii; at most ``reference_images`` reference features (spread
    over those extracted), every sample; distances in blocks of ``block`` rows."""

    name: ClassVar[str] = "precision_recall"
    k: int = attrs.field(default=3, validator=gt(0))
    reference_images: int = attrs.field(default=PR_REFERENCE_IMAGES, validator=gt(1))
    block: int = attrs.field(default=2048, validator=ge(16))
    features: FeatureNetworkConfig | None = None


class PrecisionRecall(Evaluator):
    """Share of samples inside the reference manifold (precision) and of references inside the samples' (recall)."""

    higher_is_better = {"precision": True, "recall": True}
    in_default_set = True

    def evaluate(self, ctx) -> dict[str, float]:
        cfg = self.cfg
        real = ctx.features("reference", cfg.features).features
        real = tensor(real[spread(len(real), cfg.reference_images)], np.float32).to(ctx.device)
        fake = tensor(ctx.features("samples", cfg.features).features, np.float32).to(ctx.device)
        if min(len(real), len(fake)) <= cfg.k:
            raise PrakitError(f"precision_recall with k = {cfg.k} needs more than {cfg.k} samples and reference images")
        precision, recall = precision_recall(real, fake, k=cfg.k, block=cfg.block)
        return {qualified("precision", cfg.features): precision, qualified("recall", cfg.features): recall}


def precision_recall(real: torch.Tensor, fake: torch.Tensor, *, k: int = 3, block: int = 2048) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) as the ADM suite computes them:
    a point's manifold ball reaches its k-th nearest neighbour in its own set."""
    real_radii, fake_radii = knn_radii(real, k, block), knn_radii(fake, k, block)
    precision = covered(fake, real, real_radii, block).float().mean().item()
    recall = covered(real, fake, fake_radii, block).float().mean().item()
    return precision, recall


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances (len(a), len(b)), clamped at 0."""
    return (a.square().sum(1, keepdim=True) - 2 * a @ b.T + b.square().sum(1)).clamp_min_(0)


def knn_radii(points: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """Squared distance from each point to its k-th nearest other point, in (block x block) pieces."""
    radii = []
    for rows in points.split(block):
        nearest = torch.full((len(rows), 0), math.inf, device=points.device)
        for columns in points.split(block):  # keep the k + 1 smallest (the point itself among them)
            nearest = torch.cat([nearest, squared_distances(rows, columns)], 1).topk(k + 1, dim=1, largest=False).values
        radii.append(nearest[:, k])
    return torch.cat(radii)


def covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int) -> torch.Tensor:
    """Whether each point lies within the ball of some centre."""
    inside = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    for start in range(0, len(points), block):
        rows = points[start:start + block]
        for c, r in zip(centres.split(block), radii.split(block)):
            inside[start:start + block] |= (squared_distances(rows, c) <= r).any(1)
    return inside
