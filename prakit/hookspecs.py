"""The hooks a prakit plugin can implement: one per component kind, and the model presets.

Each component hook receives a :class:`prakit.registry.Registrar` for its kind and calls
``registrar.add(ConfigClass, builder)`` once per component it provides. ``builder(cfg, **deps)``
returns the component; the dependencies each kind is built with are listed below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # the registry imports torch and the plugin manager, which imports this module
    from prakit.registry import Registrar

hookspec = pluggy.HookspecMarker("prakit")


@hookspec
def register_backbones(registrar: Registrar) -> None:
    """Add backbones (:class:`prakit.components.Backbone`); built with ``token_dim, seq_len, num_classes, grid``."""


@hookspec
def register_generators(registrar: Registrar) -> None:
    """Add intermediate-state generators (:class:`prakit.components.StateGenerator`); built with ``state_dim, cond_dim, state_bound``."""


@hookspec
def register_decoders(registrar: Registrar) -> None:
    """Add pixel decoders with their encoders (:class:`prakit.components.PixelDecoder`); built with ``token_dim, patch_size, channels``."""


@hookspec
def register_rollouts(registrar: Registrar) -> None:
    """Add rollout approximators (:class:`prakit.components.RolloutApproximator`); built from the config alone."""


@hookspec
def register_evaluators(registrar: Registrar) -> None:
    """Add evaluators (:class:`prakit.components.Evaluator`); built from the config alone."""


@hookspec
def register_feature_networks(registrar: Registrar) -> None:
    """Add feature networks for evaluators (:class:`prakit.components.FeatureNetwork`); built with ``store, device, progress``."""


@hookspec
def model_presets() -> dict[str, dict]:
    """Name model sections (plain data, as a config file writes them) that ``model.preset = NAME`` starts from."""


@hookspec
def register_datasets(registrar: Registrar) -> None:
    """Add dataset sources for ``prakit data prepare`` (:class:`prakit.components.Dataset`); built from the config alone."""


@hookspec
def register_trackers(registrar: Registrar) -> None:
    """Add experiment trackers (:class:`prakit.components.Tracker`); built with ``run_dir``."""
