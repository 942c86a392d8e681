"""Plugin discovery with pluggy.

Every plugin, built-in or third-party, is a module named in the ``prakit`` entry-point group::

    [project.entry-points.prakit]
    my_decoder = "my_decoder"

Entry points are loaded lazily, once, on first use. ``PRAKIT_DISABLE_PLUGIN_AUTOLOAD=1`` loads
none of them; ``PRAKIT_PLUGINS=a,b`` loads only the named ones. A plugin that fails to import
is skipped with one :class:`PluginLoadWarning`; the others still load. :mod:`prakit.registry`
builds its registries from this manager, again whenever the plugins it holds change.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import warnings
from types import ModuleType

import pluggy

from prakit import hookspecs
from prakit.errors import PluginError

ENTRY_POINT_GROUP = "prakit"
DISABLE_AUTOLOAD_ENV = "PRAKIT_DISABLE_PLUGIN_AUTOLOAD"
ONLY_ENV = "PRAKIT_PLUGINS"

hookimpl = pluggy.HookimplMarker("prakit")

_manager: pluggy.PluginManager | None = None


class PluginLoadWarning(UserWarning):
    """A plugin could not be imported and was skipped."""


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading entry points on first call."""
    global _manager
    if _manager is None:
        manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        manager.add_hookspecs(hookspecs)
        if not os.environ.get(DISABLE_AUTOLOAD_ENV):
            _load_entry_points(manager)
        _manager = manager
    return _manager


def register_plugin(plugin: ModuleType | object, name: str | None = None) -> None:
    """Register a plugin object by hand (a notebook, a test, a script)."""
    manager = get_plugin_manager()
    manager.register(plugin, name=name)
    _check_hook_names(manager)


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered by name."""
    get_plugin_manager().unregister(name=name)


def reset() -> None:
    """Forget every loaded plugin; the next use reads the entry points again."""
    global _manager
    _manager = None


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    only = os.environ.get(ONLY_ENV)
    allowed = {n.strip() for n in only.split(",") if n.strip()} if only is not None else None
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (allowed is not None and ep.name not in allowed) or manager.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            warnings.warn(
                f"prakit plugin {ep.name!r} ({ep.value}) failed to load and was skipped: "
                f"{type(exc).__name__}: {exc}",
                PluginLoadWarning,
                stacklevel=3,
            )
            continue
        manager.register(plugin, name=ep.name)
    _check_hook_names(manager)


def _check_hook_names(manager: pluggy.PluginManager) -> None:
    """Fail loudly on a hook implementation whose name matches no hookspec (a typo)."""
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        name = manager.get_name(exc.plugin)
        specs = sorted(n for n, caller in vars(manager.hook).items() if caller.has_spec())
        unknown = [
            caller.name
            for caller in manager.get_hookcallers(exc.plugin) or []
            if not caller.has_spec()
        ]
        hints = [
            f"{hook!r} (did you mean {', '.join(map(repr, difflib.get_close_matches(hook, specs)))}?)"
            if difflib.get_close_matches(hook, specs)
            else repr(hook)
            for hook in unknown
        ]
        raise PluginError(
            f"prakit plugin {name!r} implements unknown hook {', '.join(hints)}; "
            f"the hooks are: {', '.join(specs)}. Fix the name, or disable the plugin with "
            f"{ONLY_ENV}=<the plugins to load>."
        ) from exc
