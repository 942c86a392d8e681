"""The contract kit itself: conforming components pass, broken ones fail the right check, checks
that do not apply skip; and the config strategies draw small sizes."""

import attrs
import numpy as np
import pytest
import torch
from attrs.validators import gt, le
from hypothesis import find, given, settings
from hypothesis import strategies as st
from prakit_baselines.identity import IdentityDecoderConfig
from toys import (
    ToyBackbone,
    ToyBackboneConfig,
    ToyDataset,
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

from prakit import plugins, registry
from prakit.kinds import KINDS
from prakit.testing import (
    BackboneContract,
    DatasetContract,
    DecoderContract,
    EvaluatorContract,
    FeatureNetworkContract,
    FolderContract,
    GeneratorContract,
    LinearDecoder,
    RolloutContract,
)
from prakit.testing.strategies import configs


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
        return super().sample(h, **{**kwargs, "rng": None})


class BatchNoiseGenerator(ToyGenerator):
    """Broken: draws the whole batch from the first row's generator."""

    def sample(self, h, **kwargs):
        gens = kwargs.get("rng")
        if isinstance(gens, list):
            kwargs["rng"] = gens[0]
        return super().sample(h, **kwargs)


class UnguidedGenerator(ToyGenerator):
    """Broken: ignores guidance."""

    def sample(self, h, **kwargs):
        return super().sample(h, **{**kwargs, "h_uncond": None})


class DetachedGenerator(ToyGenerator):
    """Broken: the loss never reaches the condition."""

    def loss(self, h, z):
        return super().loss(h.detach(), z)


class TokenBatchNorm(torch.nn.BatchNorm1d):
    """A BatchNorm whose statistics, in training, are taken over every token of the batch."""

    def forward(self, x):
        return super().forward(x.flatten(0, -2)).view_as(x)


class BatchNormedStates(LinearDecoder):
    """Broken in training: the states of a batch's tokens share a BatchNorm's statistics."""

    def __init__(self, cfg, *, token_dim, **_):
        super().__init__(token_dim, 3)
        self.encoder = torch.nn.Sequential(self.encoder, TokenBatchNorm(3))


class BatchNormedPixels(LinearDecoder):
    """Broken in training: the decoded tokens of a batch share a BatchNorm's statistics."""

    def __init__(self, cfg, *, token_dim, **_):
        super().__init__(token_dim, 3)
        self.decoder = torch.nn.Sequential(self.decoder, TokenBatchNorm(token_dim))


class OverBoundStates(LinearDecoder):
    """Broken: declares a bound its states exceed."""

    state_bound = 1e-3

    def __init__(self, cfg, *, token_dim, **_):
        super().__init__(token_dim, 3)


class ShrinkingProjection(LinearDecoder):
    """Broken: its projection moves encoded states (and again on every call)."""

    def __init__(self, cfg, *, token_dim, **_):
        super().__init__(token_dim, 3)

    def project(self, z):
        return 0.5 * z


class UnseededRollout(ToyRollout):
    """Broken: draws a scale at construction from a generator that torch's seed does not reach."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.scale = float(np.random.default_rng().uniform(1, 2))

    def forward(self, x, z, labels, *, model, step):
        return self.scale * super().forward(x, z, labels, model=model, step=step)


class UnseededDataset(ToyDataset):
    """Broken: images from a generator that no seed reaches."""

    def __init__(self, cfg):
        super().__init__(attrs.evolve(cfg, seed=int(np.random.default_rng().integers(2**31))))


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
        (DecoderContract, ToyDecoderConfig, BatchNormedStates, "test_tokens_are_coded_independently"),
        (DecoderContract, ToyDecoderConfig, BatchNormedPixels, "test_tokens_are_coded_independently"),
        (DecoderContract, ToyDecoderConfig, OverBoundStates, "test_states_lie_within_the_declared_bound"),
        (DecoderContract, ToyDecoderConfig, ShrinkingProjection, "test_project_keeps_encoded_states_and_is_idempotent"),
        (RolloutContract, ToyRolloutConfig, LeakyRollout, "test_inputs_carry_no_gradient_into_the_model"),
        (RolloutContract, ToyRolloutConfig, UnseededRollout, "test_construction_is_deterministic_under_a_seed"),
        (EvaluatorContract, ToyEvaluatorConfig, NaNEvaluator, "test_returns_named_numbers_and_curves"),
        (EvaluatorContract, ToyEvaluatorConfig, RandomEvaluator, "test_deterministic"),
        (EvaluatorContract, ToyEvaluatorConfig, RandomEvaluator, "test_construction_is_deterministic_under_a_seed"),
        (FeatureNetworkContract, ToyFeaturesConfig, BatchNormedFeatures, "test_images_are_read_one_by_one"),
        (DatasetContract, ToyDatasetConfig, UnseededDataset, "test_construction_is_deterministic_under_a_seed"),
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


@pytest.mark.parametrize(
    "contract, config, opt_outs, check, reason",
    [
        (DecoderContract, ToyDecoderConfig(), {"per_token": False}, "test_tokens_are_coded_independently",
         "per_token = False"),
        (DecoderContract, IdentityDecoderConfig(), {}, "test_gradients_reach_every_parameter",
         "IdentityDecoder has no trainable parameters"),
        (DecoderContract, ToyDecoderConfig(), {}, "test_states_lie_within_the_declared_bound", "state_bound = None"),
        (RolloutContract, ToyRolloutConfig(), {"stops_gradient": False}, "test_inputs_carry_no_gradient_into_the_model",
         "stops_gradient = False"),
    ],
)
def test_a_check_that_does_not_apply_is_skipped_saying_why(contract, config, opt_outs, check, reason):
    case = type("Case", (contract,), {"config": config, **opt_outs})()
    with pytest.raises(pytest.skip.Exception, match=reason):
        getattr(case, check)()


@attrs.frozen
class Sizes:
    free: int = 0
    positive: int = attrs.field(default=1, validator=gt(0))
    capped: int = attrs.field(default=1, validator=[gt(0), le(1000)])


@settings(max_examples=200, deadline=None)
@given(configs(Sizes))
def test_drawn_integers_stay_small_without_an_upper_bound(sizes):
    assert -64 <= sizes.free <= 64 and 1 <= sizes.positive <= 65 and 1 <= sizes.capped <= 1000


def test_drawn_integers_reach_a_validators_bound_and_a_field_can_be_drawn_otherwise():
    assert find(configs(Sizes), lambda sizes: sizes.capped > 500).capped <= 1000
    assert find(configs(Sizes, positive=st.just(7)), lambda sizes: True).positive == 7


def test_the_contracts_pass_with_only_the_users_plugin_loaded(monkeypatch, tmp_path):
    """No built-in plugin is loaded (``PRAKIT_PLUGINS`` empty): the kit runs a rollout and an
    evaluator with its own stand-ins."""
    monkeypatch.setenv(plugins.ONLY_ENV, "")
    plugins.reset()
    try:
        class UsersPlugin:
            @plugins.hookimpl
            def register_rollouts(self, registrar):
                registrar.add(ToyRolloutConfig, ToyRollout)

            @plugins.hookimpl
            def register_evaluators(self, registrar):
                registrar.add(ToyEvaluatorConfig, ToyEvaluator)

        plugins.register_plugin(UsersPlugin(), name="users")
        assert registry.list_components("backbone") == [] and registry.list_components("features") == []
        rollout = type("Case", (RolloutContract,), {"config": ToyRolloutConfig()})()
        for check in ("test_shape_and_dtype", "test_leaves_the_model_as_it_found_it", "test_registered_under_its_name"):
            getattr(rollout, check)()
        evaluator = type("Case", (EvaluatorContract,), {"config": ToyEvaluatorConfig()})()
        evaluator.setup(tmp_path)
        for check in ("test_returns_named_numbers_and_curves", "test_declares_which_way_is_better", "test_deterministic"):
            getattr(evaluator, check)()
    finally:
        plugins.reset()
