"""Every built-in component passes the contract of its kind."""

import importlib
from pathlib import Path

import attrs
import pytest
from helpers import micro_model_config
from prakit_baselines.exact_rollout import ExactRolloutConfig
from prakit_baselines.identity import IdentityDecoderConfig
from prakit_baselines.rollouts import NoiseInjectionConfig, TeacherForcingConfig
from prakit_eval.distribution import FIDConfig, InceptionScoreConfig, KIDConfig, PrecisionRecallConfig, SFIDConfig
from prakit_eval.featnet import FeatNetConfig
from prakit_eval.model_metrics import (
    ClassConsistencyConfig,
    LinearProbeConfig,
    ReconstructionPSNRConfig,
    RolloutGapConfig,
    SamplingSpeedConfig,
)
from prakit_models.diffusion import DiffusionHeadConfig
from prakit_models.flow import FlowHeadConfig
from prakit_models.transformer import TransformerConfig
from prakit_pra.mlp_decoder import MLPDecoderConfig
from prakit_pra.rollout import PRARolloutConfig, SelfSampleRolloutConfig

from prakit import registry
from prakit.kinds import KINDS
from prakit.testing import (
    BackboneContract,
    ComponentContract,
    DecoderContract,
    EvaluatorContract,
    FeatureNetworkContract,
    FolderContract,
    GeneratorContract,
    RolloutContract,
)

BUILT_IN_PLUGINS = {"models", "pra", "baselines", "eval", "datasets", "trackers"}
MICRO_MODEL = micro_model_config()


class TestIdentityDecoder(DecoderContract):
    config = IdentityDecoderConfig()


class TestMLPDecoder(DecoderContract):
    config = MLPDecoderConfig(state_dim=4, width=16, depth=2)


class TestMLPDecoderWithoutStateNorm(DecoderContract):
    config = MLPDecoderConfig(state_dim=4, width=16, depth=0, normalize_state=False)


class TestTeacherForcing(RolloutContract):
    config = TeacherForcingConfig()


class TestNoiseInjectionDecay(RolloutContract):
    config = NoiseInjectionConfig(schedule="decay", decay_steps=10)


class TestNoiseInjectionUniform(RolloutContract):
    config = NoiseInjectionConfig(schedule="uniform")


class TestNoiseInjectionUniformPerPosition(RolloutContract):
    config = NoiseInjectionConfig(schedule="uniform", sigma_min=0.0, sigma_max=0.3, per="position")


class TestNoiseInjectionFixedUnclamped(RolloutContract):
    config = NoiseInjectionConfig(schedule="fixed", sigma_max=0.2, clamp=False)


class TestPRARollout(RolloutContract):
    config = PRARolloutConfig(sigma_max=0.5)


class TestPRARolloutFixed(RolloutContract):
    config = PRARolloutConfig(sigma="fixed", sigma_max=0.2)


class TestPRARolloutDecodedTeacherForcing(RolloutContract):
    config = PRARolloutConfig(sigma="fixed", sigma_max=0.0)


class TestPRARolloutCalibrated(RolloutContract):
    config = PRARolloutConfig(sigma="calibrated", calib_warmup=0, calib_tokens=8, calib_steps=2)


class TestSelfSampleRollout(RolloutContract):
    config = SelfSampleRolloutConfig(steps=2, mix=0.5)


class TestSelfSampleRolloutWarmingUp(RolloutContract):
    config = SelfSampleRolloutConfig(steps=2, mix=0.5, warmup=10)


class TestExactRollout(RolloutContract):
    config = ExactRolloutConfig(window=2, head_steps=2)


class TestExactRolloutOnAFraction(RolloutContract):
    config = ExactRolloutConfig(fraction=0.5, window=1, min_prefix=0)


class TestTransformer(BackboneContract):
    config = TransformerConfig(width=32, depth=2, heads=2)


class TestTransformerRope2d(BackboneContract):
    config = TransformerConfig(width=32, depth=2, heads=2, positions="rope2d")
    grid = (2, 5)  # not square, so rows and columns cannot be mixed up


class TestDiffusionHeadEps(GeneratorContract):
    config = DiffusionHeadConfig(width=32, depth=2, sample_steps=5)


class TestDiffusionHeadV(GeneratorContract):
    config = DiffusionHeadConfig(width=32, depth=2, sample_steps=5, prediction="v", batch_mul=1)


class TestFlowHeadX(GeneratorContract):
    config = FlowHeadConfig(width=32, depth=2, sample_steps=5)


class TestFlowHeadV(GeneratorContract):
    config = FlowHeadConfig(width=32, depth=2, sample_steps=5, prediction="v", sampler="euler", batch_mul=1)


class TestFeatNet(FeatureNetworkContract):
    config = FeatNetConfig(steps=20, width=8, features=16)


class BuiltInEvaluatorContract(EvaluatorContract):
    """The built-in evaluators run on a quickly fitted featnet, as they do in practice."""

    features = {"name": "featnet", "steps": 30, "width": 8, "features": 16}


class TestFID(BuiltInEvaluatorContract):
    config = FIDConfig()


class TestSFID(EvaluatorContract):
    """On the kit's stand-in network, which gives spatial features (featnet gives none)."""

    config = SFIDConfig()


class TestKID(BuiltInEvaluatorContract):
    config = KIDConfig(subsets=10)


class TestInceptionScore(BuiltInEvaluatorContract):
    config = InceptionScoreConfig()


class TestPrecisionRecall(BuiltInEvaluatorContract):
    config = PrecisionRecallConfig()


class TestClassConsistency(BuiltInEvaluatorContract):
    config = ClassConsistencyConfig(features=FeatNetConfig(steps=20, width=8, features=16))


class TestLinearProbe(BuiltInEvaluatorContract):
    config = LinearProbeConfig(num=40)
    model_config = MICRO_MODEL


class TestRolloutGap(BuiltInEvaluatorContract):
    config = RolloutGapConfig(num=12)
    model_config = MICRO_MODEL


class TestReconstructionPSNR(BuiltInEvaluatorContract):
    config = ReconstructionPSNRConfig(num=12)
    model_config = MICRO_MODEL


class TestReconstructionPSNRLossless(BuiltInEvaluatorContract):
    config = ReconstructionPSNRConfig(num=12)
    model_config = attrs.evolve(MICRO_MODEL, decoder=IdentityDecoderConfig())


class TestSamplingSpeed(BuiltInEvaluatorContract):
    config = SamplingSpeedConfig(batch_size=4, batches=1)
    model_config = MICRO_MODEL


def contract_classes(cls=ComponentContract):
    for sub in cls.__subclasses__():
        yield sub
        yield from contract_classes(sub)


def test_every_built_in_component_has_a_contract_subclass():
    for module in Path(__file__).parent.glob("test_*.py"):  # contracts live beside the tests of their kind
        importlib.import_module(module.stem)
    covered = {(c.kind, c.config.name) for c in contract_classes() if getattr(c, "config", None) is not None}
    built_in = {(kind, name) for kind in KINDS for name in registry.get(kind).names()
                if registry.get(kind).entry(name).plugin in BUILT_IN_PLUGINS}
    assert len(built_in) > 20 and not built_in - covered, f"no contract test for {sorted(built_in - covered)}"


@pytest.mark.parametrize("contract", [BackboneContract, GeneratorContract, DecoderContract, RolloutContract,
                                      FeatureNetworkContract], ids=lambda c: c.kind)
def test_each_contract_builds_its_kind_with_what_the_kinds_table_says(contract, tmp_path):
    case = contract()
    if isinstance(case, FolderContract):
        case.setup(tmp_path)
    assert tuple(case.deps()) == KINDS[case.kind].built_with
