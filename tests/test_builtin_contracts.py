"""Every built-in component passes the contract of its kind."""

from prakit_baselines.identity import IdentityDecoderConfig
from prakit_baselines.rollouts import NoiseInjectionConfig, TeacherForcingConfig
from prakit_pra.mlp_decoder import MLPDecoderConfig
from prakit_pra.rollout import PRARolloutConfig

from prakit.testing import DecoderContract, RolloutContract


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


class TestPRARollout(RolloutContract):
    config = PRARolloutConfig(sigma_max=0.5)


class TestPRARolloutFixed(RolloutContract):
    config = PRARolloutConfig(sigma="fixed", sigma_max=0.2)
