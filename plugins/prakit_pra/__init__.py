"""Built-in PRA components: the low-dimensional MLP pixel decoder, the PRA rollout (with
fixed, uniform or calibrated noise), the self-sampling parallel rollout, and the PRA model at
each size as presets."""

from prakit.plugin_api import hookimpl
from prakit_pra.mlp_decoder import MLPDecoder, MLPDecoderConfig
from prakit_pra.presets import MODELS
from prakit_pra.rollout import PRARollout, PRARolloutConfig, SelfSampleRollout, SelfSampleRolloutConfig


@hookimpl
def register_decoders(registrar):
    registrar.add(MLPDecoderConfig, MLPDecoder)


@hookimpl
def model_presets():
    return MODELS


@hookimpl
def register_rollouts(registrar):
    registrar.add(PRARolloutConfig, PRARollout)
    registrar.add(SelfSampleRolloutConfig, SelfSampleRollout)
