"""Built-in baselines: plain pixel tokens, teacher forcing, pixel-space noise injection and
exact (on-policy) rollout."""

from prakit.plugin_api import hookimpl
from prakit_baselines.exact_rollout import ExactRollout, ExactRolloutConfig
from prakit_baselines.identity import IdentityDecoder, IdentityDecoderConfig
from prakit_baselines.rollouts import (
    NoiseInjection,
    NoiseInjectionConfig,
    TeacherForcing,
    TeacherForcingConfig,
)


@hookimpl
def register_decoders(registrar):
    registrar.add(IdentityDecoderConfig, IdentityDecoder)


@hookimpl
def register_rollouts(registrar):
    registrar.add(TeacherForcingConfig, TeacherForcing)
    registrar.add(NoiseInjectionConfig, NoiseInjection)
    registrar.add(ExactRolloutConfig, ExactRollout)
