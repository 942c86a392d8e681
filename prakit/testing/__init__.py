"""Contract tests and hypothesis strategies for plugin authors.

A new component is tested by subclassing the contract of its kind and setting ``config``;
``prakit.testing.strategies`` (needs hypothesis) draws valid and broken configs.
"""

from prakit.testing.contracts import (
    BackboneContract,
    ComponentContract,
    DatasetContract,
    DecoderContract,
    EvaluatorContract,
    FeatureNetworkContract,
    FolderContract,
    GeneratorContract,
    LinearDecoder,
    RolloutContract,
    micro_model_config,
    perturb_parameters,
)

__all__ = [
    "BackboneContract",
    "ComponentContract",
    "DatasetContract",
    "DecoderContract",
    "EvaluatorContract",
    "FeatureNetworkContract",
    "FolderContract",
    "GeneratorContract",
    "LinearDecoder",
    "RolloutContract",
    "micro_model_config",
    "perturb_parameters",
]
