"""The swappable component kinds, described once: each kind's config base, the config key that
selects one, its interface, the hook that registers it and what it is built with.

Torch-free, so the config layer (and ``--help``) loads without torch; the interfaces themselves
are in :mod:`prakit.components`. The registry checks every build against ``built_with``, and the
hooks' docstrings, docs/plugins.md and the contract kit are tested against this table.
"""

from __future__ import annotations

import importlib
from typing import ClassVar

import attrs


@attrs.frozen
class ComponentConfig:
    """Base of every component config; subclasses set ``name: ClassVar[str]``."""

    name: ClassVar[str]
    kind: ClassVar[str]


@attrs.frozen
class BackboneConfig(ComponentConfig):
    kind: ClassVar[str] = "backbone"


@attrs.frozen
class GeneratorConfig(ComponentConfig):
    kind: ClassVar[str] = "generator"


@attrs.frozen
class DecoderConfig(ComponentConfig):
    kind: ClassVar[str] = "decoder"


@attrs.frozen
class RolloutConfig(ComponentConfig):
    kind: ClassVar[str] = "rollout"


@attrs.frozen
class EvaluatorConfig(ComponentConfig):
    kind: ClassVar[str] = "evaluator"


@attrs.frozen
class FeatureNetworkConfig(ComponentConfig):
    kind: ClassVar[str] = "features"


@attrs.frozen
class DatasetConfig(ComponentConfig):
    kind: ClassVar[str] = "dataset"


@attrs.frozen
class TrackerConfig(ComponentConfig):
    kind: ClassVar[str] = "tracker"


@attrs.frozen
class Kind:
    """A component kind: its config base, where a config selects one, its interface (a class of
    :mod:`prakit.components`, by name), its hook, and the keywords it is built with besides its config."""

    name: str
    config: type[ComponentConfig]
    key: str
    interface_name: str
    hook: str
    built_with: tuple[str, ...]

    @property
    def interface(self) -> type:
        """The interface class (importing :mod:`prakit.components`, and torch with it)."""
        return getattr(importlib.import_module("prakit.components"), self.interface_name)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("backbone", BackboneConfig, "model.backbone", "Backbone", "register_backbones",
             ("token_dim", "seq_len", "num_classes", "grid")),
        Kind("generator", GeneratorConfig, "model.generator", "StateGenerator", "register_generators",
             ("state_dim", "cond_dim", "state_bound")),
        Kind("decoder", DecoderConfig, "model.decoder", "PixelDecoder", "register_decoders",
             ("token_dim", "patch_size", "channels")),
        Kind("rollout", RolloutConfig, "model.rollout", "RolloutApproximator", "register_rollouts", ()),
        Kind("evaluator", EvaluatorConfig, "eval.evaluators", "Evaluator", "register_evaluators", ()),
        Kind("features", FeatureNetworkConfig, "eval.features", "FeatureNetwork", "register_feature_networks",
             ("store", "device", "progress")),
        Kind("dataset", DatasetConfig, "data.source", "Dataset", "register_datasets", ()),
        Kind("tracker", TrackerConfig, "train.trackers", "Tracker", "register_trackers", ("run_dir",)),
    )
}

#: The config base class of each kind -> its kind; component fields are typed with these.
CONFIG_BASES: dict[type[ComponentConfig], Kind] = {kind.config: kind for kind in KINDS.values()}
