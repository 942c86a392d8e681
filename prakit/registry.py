"""One registry per component kind, filled from the plugins' hooks.

The surface follows timm's ``register_model`` / ``create_model`` / ``list_models``::

    from prakit import registry
    registry.list_components("decoder", "m*")                              # ['mlp']
    cfg = registry.get("decoder").config("mlp", state_dim=32)
    decoder = registry.build(cfg, token_dim=48, patch_size=4, channels=3)  # the kind comes from the config

Registries are rebuilt from the hooks on first use after the loaded plugins change; they are
never a global dict that importing a module mutates.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
from typing import Any, Callable, Iterator

import attrs
import pluggy

from prakit import plugins
from prakit.errors import DuplicateComponentError, PluginError, PrakitError, UnknownNameError
from prakit.kinds import KINDS, ComponentConfig, Kind

#: A glob whose every ``[`` opens a set that a ``]`` closes, read as fnmatch reads it (``[]]`` and
#: ``[!]]`` hold a ``]``).
_GLOB = re.compile(r"(?:[^[]|\[!?+\]?+[^\]]*\])*")

#: The registries and the loaded plugins (the manager, then its (name, plugin) pairs) they were built from.
_built: tuple[tuple, dict[str, Registry]] | None = None


@attrs.frozen
class Entry:
    """A registered component: its config class, its builder and the plugin that provided it."""

    kind: str
    name: str
    config_class: type[ComponentConfig]
    builder: Callable[..., Any]
    plugin: str
    description: str

    @property
    def module(self) -> str:
        """The module that defines the component (its config class), e.g. ``prakit_pra.mlp_decoder``."""
        return self.config_class.__module__


class Registry:
    """The components of one kind, by name."""

    def __init__(self, kind: Kind):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        if entry.name in self._entries:
            first = self._entries[entry.name]
            raise DuplicateComponentError(
                f"{self.kind.name} {entry.name!r} is registered twice: by plugin {first.plugin!r} "
                f"and by plugin {entry.plugin!r}; rename one of them or uninstall one plugin"
            )
        self._entries[entry.name] = entry

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a glob ``pattern``."""
        if not _GLOB.fullmatch(pattern):  # fnmatch would look for the '[' itself and match nothing
            raise PrakitError(f"pattern {pattern!r} is not a valid glob: a '[' opens a set that no ']' closes; "
                              "write [[] for a literal '['")
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self, pattern: str = "*") -> list[Entry]:
        return [self._entries[n] for n in self.names(pattern)]

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind.name, name, self._entries) from None

    def config(self, name: str, **fields: Any) -> ComponentConfig:
        """The config of ``name`` with its defaults, updated by ``fields``."""
        return self.entry(name).config_class(**fields)

    def build(self, cfg: ComponentConfig | str, **deps: Any) -> Any:
        """Build a component from its config (or from a name, with default config)."""
        if isinstance(cfg, str):
            cfg = self.config(cfg)
        entry = self.entry(cfg.name)
        if not isinstance(cfg, entry.config_class):
            raise TypeError(
                f"{self.kind.name} {cfg.name!r} expects a {entry.config_class.__qualname__}, "
                f"got a {type(cfg).__qualname__}"
            )
        if set(deps) != set(self.kind.built_with):
            wanted = ", ".join(self.kind.built_with) or "nothing besides its config"
            raise TypeError(f"a {self.kind.name} is built with {wanted}; got {', '.join(sorted(deps)) or 'nothing'}")
        component = entry.builder(cfg, **deps)
        if not isinstance(component, self.kind.interface):
            raise PluginError(
                f"{self.kind.name} {cfg.name!r} from plugin {entry.plugin!r} built a "
                f"{type(component).__qualname__}, which is not a {self.kind.interface.__qualname__}"
            )
        return component

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


class Registrar:
    """What every ``register_<kind>s`` hook receives: ``registrar.add(ConfigClass, builder)``
    registers one component of that kind, after checking the config class."""

    def __init__(self, registry: Registry, plugin: str):
        self._registry = registry
        self._plugin = plugin

    @property
    def kind(self) -> str:
        return self._registry.kind.name

    def add(
        self,
        config_class: type[ComponentConfig],
        builder: Callable[..., Any],
        *,
        description: str | None = None,
    ) -> None:
        """Register ``builder(cfg, **deps)`` under ``config_class.name``.

        ``builder`` is usually the component class itself. The description defaults to the
        first line of the builder's docstring.
        """
        base = self._registry.kind.config
        where = f"plugin {self._plugin!r} registering {config_class!r} as a {self.kind}"
        if not (isinstance(config_class, type) and issubclass(config_class, base)):
            raise PluginError(f"{where}: the config class must subclass {base.__qualname__}")
        if "__attrs_attrs__" not in config_class.__dict__:  # subclasses of a frozen base are frozen
            raise PluginError(f"{where}: the config class must be decorated with @attrs.frozen")
        name = config_class.__dict__.get("name")
        if not isinstance(name, str) or not name:
            raise PluginError(f"{where}: the config class must set `name: ClassVar[str] = '...'`")
        if not callable(builder):
            raise PluginError(f"{where}: the builder must be callable")
        doc = inspect.getdoc(builder) or inspect.getdoc(config_class) or ""
        self._registry.add(
            Entry(
                kind=self.kind,
                name=name,
                config_class=config_class,
                builder=builder,
                plugin=self._plugin,
                description=description or doc.strip().split("\n")[0],
            )
        )


def registries() -> dict[str, Registry]:
    """Every kind's registry, built from the loaded plugins on first use after they change."""
    global _built
    manager = plugins.get_plugin_manager()
    loaded = (manager, *manager.list_name_plugin())
    if _built is None or _built[0] != loaded:
        _built = (loaded, _build(manager))
    return _built[1]


def _build(manager: pluggy.PluginManager) -> dict[str, Registry]:
    built = {name: Registry(kind) for name, kind in KINDS.items()}
    for name, kind in KINDS.items():
        # Each implementation gets its own registrar so entries know their plugin.
        for impl in getattr(manager.hook, kind.hook).get_hookimpls():
            registrar = Registrar(built[name], impl.plugin_name)
            try:
                impl.function(**{arg: registrar for arg in impl.argnames})
            except PrakitError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in {kind.hook}: {type(exc).__name__}: {exc}"
                ) from exc
    return built


def get(kind: str) -> Registry:
    """The registry of one kind."""
    try:
        return registries()[kind]
    except KeyError:
        raise UnknownNameError("component kind", kind, KINDS) from None


def list_components(kind: str, pattern: str = "*") -> list[str]:
    """Names of the registered components of ``kind`` matching a glob ``pattern``."""
    return get(kind).names(pattern)


def build(cfg: ComponentConfig, **deps: Any) -> Any:
    """Build a component from its config; the registry is chosen by the config's kind."""
    return get(cfg.kind).build(cfg, **deps)
