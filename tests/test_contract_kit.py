"""The contract kit itself: conforming components pass, broken ones fail the right check."""

import attrs
import numpy as np
import pytest
from toys import (
    ToyBackbone,
    ToyBackboneConfig,
    ToyDatasetConfig,
    ToyDecoderConfig,
    ToyEvaluator,
    ToyEvaluatorConfig,
    ToyFeatures,
    ToyFeaturesConfig,
    ToyGenerator,
    ToyGeneratorConfig,
    ToyRollout,
    ToyRolloutConfig,
)

from prakit import plugins
from prakit.components import KINDS
from prakit.testing import (
    BackboneContract,
    DatasetContract,
    DecoderContract,
    EvaluatorContract,
    FeatureNetworkContract,
    FolderContract,
    GeneratorContract,
    RolloutContract,
)


@pytest.fixture(autouse=True)
def _toys(toy_plugin):
    return toy_plugin


class TestToyBackbone(BackboneContract):
    config = ToyBackboneConfig()


class TestToyGenerator(GeneratorContract):
    config = ToyGeneratorConfig()


class TestToyDecoder(DecoderContract):
    config = ToyDecoderConfig()


class TestToyRollout(RolloutContract):
    config = ToyRolloutConfig()


class TestToyEvaluator(EvaluatorContract):
    config = ToyEvaluatorConfig()


class TestToyFeatures(FeatureNetworkContract):
    config = ToyFeaturesConfig()


class TestToyDataset(DatasetContract):
    config = ToyDatasetConfig(size=5)


class PeekingBackbone(ToyBackbone):
    """Broken: every position sees the whole sequence."""

    def forward(self, tokens, labels):
        h = super().forward(tokens, labels)
        return h + h.mean(1, keepdim=True)


class StaleCacheBackbone(ToyBackbone):
    """Broken: the cache forgets every token."""

    def step(self, token, cache):
        return self.out(cache["sum"])


class SeedlessGenerator(ToyGenerator):
    """Broken: ignores the generator it is given."""

    def sample(self, h, **kwargs):
        return super().sample(h, **{**kwargs, "generator": None})


class BatchNoiseGenerator(ToyGenerator):
    """Broken: draws the whole batch from the first row's generator."""

    def sample(self, h, **kwargs):
        gens = kwargs.get("generator")
        if isinstance(gens, list):
            kwargs["generator"] = gens[0]
        return super().sample(h, **kwargs)


class UnguidedGenerator(ToyGenerator):
    """Broken: ignores guidance."""

    def sample(self, h, **kwargs):
        return super().sample(h, **{**kwargs, "h_uncond": None})


class DetachedGenerator(ToyGenerator):
    """Broken: the loss never reaches the condition."""

    def loss(self, h, z):
        return super().loss(h.detach(), z)


class LeakyRollout(ToyRollout):
    """Broken: decodes the states without stopping the gradient."""

    def forward(self, x, z, labels, *, model, step):
        return model.decoder.decode(z)


class NaNEvaluator(ToyEvaluator):
    """Broken: a number that is not one."""

    def evaluate(self, ctx):
        return {**super().evaluate(ctx), "mean": float("nan")}


class RandomEvaluator(ToyEvaluator):
    """Broken: claims to be deterministic and is not."""

    def evaluate(self, ctx):
        return {"mean": float(np.random.rand())}


class BatchNormedFeatures(ToyFeatures):
    """Broken: each image's features depend on the rest of its batch."""

    def forward(self, images):
        features, logits = super().forward(images)
        return features - features.mean(0), logits


def broken_config(base):
    """A config class registered as 'broken' for the kind of ``base``."""
    return attrs.frozen(type("BrokenConfig", (base,), {"name": "broken", "__annotations__": {}}))


@pytest.mark.parametrize(
    "contract, base, component, check",
    [
        (BackboneContract, ToyBackboneConfig, PeekingBackbone, "test_causal"),
        (BackboneContract, ToyBackboneConfig, StaleCacheBackbone, "test_kv_cache_matches_full_forward"),
        (GeneratorContract, ToyGeneratorConfig, SeedlessGenerator, "test_sample_shape_and_seed"),
        (GeneratorContract, ToyGeneratorConfig, DetachedGenerator, "test_loss_reaches_the_condition"),
        (GeneratorContract, ToyGeneratorConfig, BatchNoiseGenerator, "test_rows_drawn_with_their_own_generators_do_not_depend_on_the_batch"),
        (GeneratorContract, ToyGeneratorConfig, UnguidedGenerator, "test_guidance_at_scale_one_changes_nothing"),
        (RolloutContract, ToyRolloutConfig, LeakyRollout, "test_inputs_carry_no_gradient_into_the_model"),
        (EvaluatorContract, ToyEvaluatorConfig, NaNEvaluator, "test_returns_named_numbers_and_curves"),
        (EvaluatorContract, ToyEvaluatorConfig, RandomEvaluator, "test_deterministic"),
        (FeatureNetworkContract, ToyFeaturesConfig, BatchNormedFeatures, "test_images_are_read_one_by_one"),
    ],
)
def test_a_broken_component_fails_its_contract(contract, base, component, check, tmp_path):
    config_class = broken_config(base)

    class Broken:
        @plugins.hookimpl(specname=KINDS[contract.kind].hook)
        def register(self, registrar):
            registrar.add(config_class, component)

    plugins.register_plugin(Broken(), name="broken")
    case = type("Case", (contract,), {"config": config_class()})()
    if isinstance(case, FolderContract):
        case.setup(tmp_path)
    with pytest.raises(AssertionError):
        getattr(case, check)()
