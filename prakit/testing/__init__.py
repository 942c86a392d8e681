"""Contract tests and hypothesis strategies for plugin authors.

A new component is tested by subclassing the contract of its kind and setting ``config``; the
contracts run it with the kit's own stand-ins (:mod:`prakit.testing.standins`), so they pass with
only that component's plugin loaded. ``prakit.testing.strategies`` (needs hypothesis) draws valid
and broken configs.
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
    RolloutContract,
    TrackerContract,
    perturb_parameters,
)
from prakit.testing.standins import LinearDecoder, register_stand_ins, stand_in_model_config

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
    "TrackerContract",
    "perturb_parameters",
    "register_stand_ins",
    "stand_in_model_config",
]
