"""Built-in baselines: plain pixel tokens, teacher forcing and pixel-space noise injection."""

from prakit import hookimpl
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
