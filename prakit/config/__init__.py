"""Typed experiment configs: attrs classes, a cattrs converter, files and overrides."""

from prakit.config.converter import structure, unstructure
from prakit.config.io import apply_overrides, dumps, from_data, load_config, preset_model, read_file, save_config
from prakit.config.schema import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LaunchConfig,
    ModelConfig,
    OptimConfig,
    SampleConfig,
    TrainConfig,
    with_options,
)

__all__ = [
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "LaunchConfig",
    "ModelConfig",
    "OptimConfig",
    "SampleConfig",
    "TrainConfig",
    "apply_overrides",
    "dumps",
    "from_data",
    "load_config",
    "preset_model",
    "read_file",
    "save_config",
    "structure",
    "unstructure",
    "with_options",
]
