"""Model presets by name, as DiT's ``DiT_models``, declared by plugins (the ``model_presets``
hook; the built-in PRA sizes are :mod:`prakit_pra.presets`).

A config selects one with ``model.preset = "pra-S"`` (in the file or on the command line); the
preset is the model section's starting point and every key written beside it overrides it, a
component with another ``name`` replacing the preset's.
"""

from __future__ import annotations

from typing import Any

from prakit.errors import PluginError


def model_presets() -> dict[str, dict[str, Any]]:
    """Every installed plugin's presets: name -> model section (plain data)."""
    from prakit import plugins

    found: dict[str, dict[str, Any]] = {}
    owners: dict[str, str] = {}
    for impl in plugins.get_plugin_manager().hook.model_presets.get_hookimpls():
        for name, section in impl.function().items():
            if name in owners:
                raise PluginError(f"plugins {owners[name]!r} and {impl.plugin_name!r} both define the model preset {name!r}")
            found[name], owners[name] = section, impl.plugin_name
    return found
