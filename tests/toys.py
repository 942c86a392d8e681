"""Small components of every kind, registered by tests through a real plugin object."""

import json
import os
from typing import Any, ClassVar

import attrs
import numpy as np

from prakit import hookimpl
from prakit.components import Dataset, Evaluator, RolloutApproximator, Tracker
from prakit.kinds import (
    BackboneConfig,
    DatasetConfig,
    DecoderConfig,
    EvaluatorConfig,
    FeatureNetworkConfig,
    GeneratorConfig,
    RolloutConfig,
    TrackerConfig,
)
from prakit.testing.standins import StandInBackbone as ToyBackbone
from prakit.testing.standins import StandInFeatures as ToyFeatures
from prakit.testing.standins import StandInGenerator as ToyGenerator
from prakit.testing.standins import stand_in_decoder


@attrs.frozen
class ToyBackboneConfig(BackboneConfig):
    name: ClassVar[str] = "toy"
    width: int = 8


@attrs.frozen
class ToyGeneratorConfig(GeneratorConfig):
    name: ClassVar[str] = "toy"


@attrs.frozen
class ToyEvaluatorConfig(EvaluatorConfig):
    name: ClassVar[str] = "toy"


class ToyEvaluator(Evaluator):
    """Mean pixel value of the samples and of the real images."""

    higher_is_better = {"mean": True}

    def evaluate(self, ctx):
        return {"mean": float(ctx.samples.images[:].mean()), "real_mean": float(ctx.real.images[:].mean())}


@attrs.frozen
class ToyFeaturesConfig(FeatureNetworkConfig):
    name: ClassVar[str] = "toy"


@attrs.frozen
class ToyTrackerConfig(TrackerConfig):
    name: ClassVar[str] = "toy"


class ToyTracker(Tracker):
    """Appends each call to ``toy-tracker.jsonl`` in the run directory."""

    def start(self, config, resume_step):
        self.write({"start": resume_step})

    def log_scalars(self, values, step):
        self.write({"step": step, **values})

    def log_image(self, name, image, step):
        self.write({"step": step, name: list(image.shape)})

    def write(self, row):
        with (self.run_dir / "toy-tracker.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")


@attrs.frozen
class ToyDatasetConfig(DatasetConfig):
    name: ClassVar[str] = "toy"
    size: int = 4
    seed: int = 0


class ToyDataset(Dataset):
    """Random 4x4 RGB images in two classes."""

    class_names = ("a", "b")

    def __init__(self, cfg):
        rng = np.random.default_rng(cfg.seed)
        self.images = rng.integers(0, 256, (cfg.size, 4, 4, 3), dtype=np.uint8)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], index % 2


@attrs.frozen
class ToyDecoderConfig(DecoderConfig):
    """A random linear map to a 3-dim state and back that keeps the patch layout it was built with."""

    name: ClassVar[str] = "toy"
    state_dim: int = 3


@attrs.frozen
class ToyRolloutConfig(RolloutConfig):
    name: ClassVar[str] = "toy"


class ToyRollout(RolloutApproximator):
    """x~ = x with its sign flipped."""

    def __init__(self, cfg):
        super().__init__()

    def forward(self, x, z, labels, *, model: Any, step: int):
        return -x


@attrs.frozen
class ToyNaNRolloutConfig(RolloutConfig):
    name: ClassVar[str] = "toy_nan"
    after: int = 0
    rank: int | None = None  # only on this distributed rank (None: every rank)


class ToyNaNRollout(RolloutApproximator):
    """x~ = x until step ``after``, NaN from then on (to test the non-finite guard)."""

    def __init__(self, cfg):
        super().__init__()
        self.after, self.rank = cfg.after, cfg.rank

    def forward(self, x, z, labels, *, model: Any, step: int):
        on_this_rank = self.rank is None or self.rank == int(os.environ.get("RANK", 0))
        return x * float("nan") if step >= self.after and on_this_rank else x


class ToyPlugin:
    """A plugin object implementing every hook."""

    @hookimpl
    def register_backbones(self, registrar):
        registrar.add(ToyBackboneConfig, ToyBackbone)

    @hookimpl
    def register_generators(self, registrar):
        registrar.add(ToyGeneratorConfig, ToyGenerator)

    @hookimpl
    def register_evaluators(self, registrar):
        registrar.add(ToyEvaluatorConfig, ToyEvaluator)

    @hookimpl
    def register_feature_networks(self, registrar):
        registrar.add(ToyFeaturesConfig, ToyFeatures)

    @hookimpl
    def register_datasets(self, registrar):
        registrar.add(ToyDatasetConfig, ToyDataset)

    @hookimpl
    def register_trackers(self, registrar):
        registrar.add(ToyTrackerConfig, ToyTracker)

    @hookimpl
    def register_decoders(self, registrar):
        registrar.add(ToyDecoderConfig, stand_in_decoder)

    @hookimpl
    def register_rollouts(self, registrar):
        registrar.add(ToyRolloutConfig, ToyRollout)
        registrar.add(ToyNaNRolloutConfig, ToyNaNRollout)

    @hookimpl
    def model_presets(self):
        return {"toy": {kind: {"name": "toy"} for kind in ("backbone", "generator", "decoder", "rollout")}}


toy_plugin = ToyPlugin()  # what the entry point of a test distribution names
