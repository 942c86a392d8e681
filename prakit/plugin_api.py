"""Everything a plugin imports from prakit, in one place: the hook marker, each kind's config base
and interface, errors, seeded noise, the run directory, and the helpers the built-in plugins share (atomic files,
feature caches, image conversions). A plugin that imports only from here (and ``prakit.testing``
in its tests) keeps working when prakit's other modules move."""

from prakit import hookimpl
from prakit.components import (
    Backbone,
    Curve,
    Dataset,
    Evaluator,
    FeatureNetwork,
    PixelDecoder,
    RolloutApproximator,
    RolloutModel,
    StateGenerator,
    Tracker,
)
from prakit.config import unstructure
from prakit.config.io import flatten
from prakit.data import to_model_input
from prakit.errors import PrakitError
from prakit.eval.features import Moments, cache_folder, held_out_split, spread
from prakit.eval.frechet import frechet_distance
from prakit.eval.reference import PR_REFERENCE_IMAGES, StoreImages
from prakit.io import atomic_file
from prakit.kinds import (
    BackboneConfig,
    DatasetConfig,
    DecoderConfig,
    EvaluatorConfig,
    FeatureNetworkConfig,
    GeneratorConfig,
    RolloutConfig,
    TrackerConfig,
)
from prakit.locks import making as exclusive  # the name plugins import it by
from prakit.model import to_uint8
from prakit.progress import Progress
from prakit.random import Generators, randn, sample_generators
from prakit.registry import Registrar
from prakit.run import Run
from prakit.tracking import remembered_id

__all__ = [
    "PR_REFERENCE_IMAGES",
    "Backbone",
    "BackboneConfig",
    "Curve",
    "Dataset",
    "DatasetConfig",
    "DecoderConfig",
    "Evaluator",
    "EvaluatorConfig",
    "FeatureNetwork",
    "FeatureNetworkConfig",
    "GeneratorConfig",
    "Generators",
    "Moments",
    "PixelDecoder",
    "PrakitError",
    "Progress",
    "Registrar",
    "RolloutApproximator",
    "RolloutConfig",
    "RolloutModel",
    "Run",
    "StateGenerator",
    "StoreImages",
    "Tracker",
    "TrackerConfig",
    "atomic_file",
    "cache_folder",
    "exclusive",
    "flatten",
    "frechet_distance",
    "held_out_split",
    "hookimpl",
    "randn",
    "remembered_id",
    "sample_generators",
    "spread",
    "to_model_input",
    "to_uint8",
    "unstructure",
]
