"""Built-in models: the causal transformer backbone, and diffusion and flow heads for intermediate states."""

from prakit.plugin_api import hookimpl
from prakit_models.diffusion import DiffusionHead, DiffusionHeadConfig
from prakit_models.flow import FlowHead, FlowHeadConfig
from prakit_models.transformer import Transformer, TransformerConfig


@hookimpl
def register_backbones(registrar):
    registrar.add(TransformerConfig, Transformer)


@hookimpl
def register_generators(registrar):
    registrar.add(DiffusionHeadConfig, DiffusionHead)
    registrar.add(FlowHeadConfig, FlowHead)
