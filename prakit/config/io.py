"""Reading, overriding and writing experiment configs (TOML, also JSON and YAML)."""

from __future__ import annotations

import copy
import functools
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping

import attrs
import tomli_w

from prakit.config.converter import structure, unstructure
from prakit.config.schema import ExperimentConfig, ModelConfig, free_fields
from prakit.errors import ConfigError, PrakitError, UnknownNameError, os_problem
from prakit.io import atomic_write_text
from prakit.presets import model_presets

#: Overrides: ``key=value`` strings as on the command line (``"train.steps=100"``), or a mapping of
#: dotted keys to values (``{"train.steps": 100}``).
Overrides = Iterable[str] | Mapping[str, Any]


def load_config(path: str | os.PathLike, overrides: Overrides = ()) -> ExperimentConfig:
    """Read an experiment config file and apply dotted ``key=value`` overrides."""
    return from_data(read_file(path), overrides, source=str(path))


def from_data(
    data: dict[str, Any], overrides: Overrides = (), source: str | None = None
) -> ExperimentConfig:
    """Plain data (as read from a file) plus overrides -> a validated :class:`ExperimentConfig`."""
    try:
        data = apply_overrides(upgraded(data), overrides, source)
    except RecursionError:
        raise _too_deep(source) from None
    return structure(data, ExperimentConfig, source)


def with_preset(data: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """``data`` with ``model.preset`` replaced by the preset's model section (:mod:`prakit.presets`),
    the keys beside it merged over it."""
    model = data.get("model")
    if not isinstance(model, dict) or "preset" not in model:
        return data
    model = dict(model)
    name = model.pop("preset")
    presets = model_presets()
    if not isinstance(name, str) or name not in presets:
        raise ConfigError([("model.preset", str(UnknownNameError("preset", str(name), presets)))], source)
    return {**data, "model": merge(copy.deepcopy(presets[name]), model)}


def preset_model(name: str, **fields: Any) -> ModelConfig:
    """The model config a preset names, ``fields`` replacing ModelConfig's (``patch_size=4``), as
    ``DiT_models[name]`` builds a DiT: ``preset_model("micro", patch_size=4)``."""
    data = with_preset({"model": {"preset": name}})["model"]
    return attrs.evolve(structure(data, ModelConfig, "model"), **fields)


def upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """Config data as earlier versions wrote it (run directories, checkpoints), in today's keys:
    the flag ``train.tensorboard`` is the ``tensorboard`` tracker of ``train.trackers``."""
    train = data.get("train")
    if not isinstance(train, dict) or "tensorboard" not in train:
        return data
    train = dict(train)
    if train.pop("tensorboard") is True:
        train["trackers"] = [*train.get("trackers", []), {"name": "tensorboard"}]
    return {**data, "train": train}


def read_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a ``.toml``, ``.json`` or ``.yaml`` file into plain data.

    ``extends = "base.toml"`` (relative to the file) starts from another file's data and merges
    this one over it; a component whose ``name`` changes is replaced, not merged.
    """
    chain = _extends_chain(Path(os.path.realpath(path)))  # a symlink loop is reported on reading
    try:
        return upgraded(functools.reduce(merge, reversed(chain.values())))
    except RecursionError:
        raise _too_deep(str(path)) from None


def _extends_chain(path: Path) -> dict[Path, dict[str, Any]]:
    """The data of ``path`` and of each file it extends in turn, without their ``extends`` keys."""
    chain: dict[Path, dict[str, Any]] = {}
    while path not in chain:
        chain[path] = data = _parse(path)
        base = data.pop("extends", None)
        if base is None:
            return chain
        if not isinstance(base, str) or "\0" in base:
            raise ConfigError([("extends", f"expected a file name, got {base!r}")], str(path))
        path = Path(os.path.realpath(path.parent / base))
    raise ConfigError([("extends", f"circular: {' -> '.join(map(str, (*chain, path)))}")], str(path))


def _parse(path: Path) -> dict[str, Any]:
    """One file's data, which must be a table."""
    text = _read_text(path)
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = _load_yaml(text)
        else:
            raise ValueError(f"unknown config format {path.suffix!r}; use .toml, .json or .yaml")
    except (ValueError, tomllib.TOMLDecodeError) as exc:  # JSON and YAML errors are ValueErrors
        raise ConfigError([("", str(exc))], str(path)) from None
    except RecursionError:
        raise _too_deep(str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError([("", "the file must hold a table of sections")], str(path))
    return data


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8").removeprefix("\ufeff")  # a byte order mark, as editors may write
    except OSError as exc:
        raise ConfigError([("", f"cannot read the file: {os_problem(exc)}")], str(path)) from None
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        raise ConfigError([("", problem)], str(path)) from None


def _too_deep(source: str | None) -> ConfigError:
    return ConfigError([("", "lists or tables nested too deeply; nest them less")], source)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config data as ``{"model.rollout.name": "pra", ...}``; lists stay values."""
    if not isinstance(data, dict):
        return {prefix: data}
    out = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}"))
    return out


def changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old value, new value)}`` for each flattened key whose value differs, in key order."""
    a, b = flatten(old), flatten(new)
    return {key: (a.get(key), b.get(key)) for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``; tables merge key by key unless their ``name`` differs."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and value.get("name", old.get("name")) == old.get("name"):
            out[key] = merge(old, value)
        else:
            out[key] = value
    return out


def _load_yaml(text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ValueError("YAML configs need PyYAML: pip install pyyaml") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (['a', 'b', 'c'], value); the value is read as TOML, else as a string."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise ConfigError([(key.strip(), f"override {text!r} must look like section.key=value")])
    parts = checked_key(key.strip(), text)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def checked_key(key: str, override: str | None = None) -> list[str]:
    """A dotted key's parts; an empty part is an error naming the ``override`` it came from."""
    parts = key.split(".")
    if not all(parts):
        raise ConfigError([(key, f"override {override or key!r} must look like section.key=value")])
    return parts


def parse_axis(text: str, flag: str, shape: str) -> tuple[str, tuple[str, ...]]:
    """An axis of a grid (``--grid``, ``--search``): ``KEY=V1,V2`` -> ``(KEY, ("V1", "V2"))``, the
    values as written; commas inside brackets, braces or quotes do not split
    (``optim.betas=[0.9,0.95],[0.9,0.99]``). ``shape`` says in errors what ``flag`` takes."""
    key, sep, values = text.partition("=")
    key = key.strip()
    parts = split_top_level(values)
    if not sep or not key or not all(p.strip() for p in parts):
        raise PrakitError(f"{flag} {text!r} must look like {shape}")
    for part in parts:
        parse_override(f"{key}={part}")  # a malformed key fails here, with the override's message
    if len(set(parts)) < len(parts):
        raise PrakitError(f"{flag} {text!r} names a value twice")
    return key, tuple(p.strip() for p in parts)


def split_top_level(text: str) -> list[str]:
    """Split at the commas that are outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def apply_overrides(data: dict[str, Any], overrides: Overrides, source: str | None = None) -> dict[str, Any]:
    """Return a copy of ``data`` with the overrides applied and ``model.preset`` expanded.

    The model's preset is where it starts, so ``model.preset=...`` is applied and expanded first.
    Setting a component's ``name`` (``model.rollout.name=pra``) resets that component to the new
    one's defaults; those name changes are applied next, the other overrides after them.
    """
    data = copy.deepcopy(data)
    if isinstance(overrides, Mapping):
        parsed = [(checked_key(key), value) for key, value in overrides.items()]
    else:
        parsed = [parse_override(o) for o in overrides]
    for parts, value in parsed:
        if parts == ["model", "preset"]:
            _set(data, parts, value)
    data = with_preset(data, source)
    is_rename = [len(parts) > 1 and parts[-1] == "name" for parts, _ in parsed]
    for (parts, value), rename in zip(parsed, is_rename):
        if rename:
            _set(data, parts[:-1], {"name": value})
    for (parts, value), rename in zip(parsed, is_rename):
        if not rename and parts != ["model", "preset"]:
            _set(data, parts, value)
    return data


def _set(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_index(node, part, here)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError([(here, f"is {node!r}, not a table; cannot set {'.'.join(parts)}")])
    last = parts[-1]
    if isinstance(node, list):
        index = _index(node, last, ".".join(parts), allow_append=True)
        node[index:index + 1] = [value]
    else:
        node[last] = value


def _index(items: list, part: str, path: str, allow_append: bool = False) -> int:
    limit = len(items) + int(allow_append)
    if not part.isdigit() or int(part) >= limit:
        raise ConfigError([(path, f"list index must be an integer below {limit}")])
    return int(part)


def dumps(cfg: ExperimentConfig) -> str:
    """The resolved config as TOML text."""
    return tomli_w.dumps(unstructure(cfg))


def save_config(cfg: ExperimentConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as TOML, atomically (temporary file, fsync, rename)."""
    atomic_write_text(Path(path), dumps(cfg))


def computation_changes(old: dict, new: dict) -> list[str]:
    """Dotted keys where a config written earlier (``old``, as stored, read as today's schema reads
    it, so a field added since counts at its default) and ``new`` differ in what the run computes
    (the schema's free fields aside)."""
    try:
        old = unstructure(from_data(old))
    except PrakitError:  # one today's schema cannot read is compared as written
        old = upgraded(old)
    free = free_fields()
    return [key for key in changes(old, new) if not any(key == f or key.startswith(f + ".") for f in free)]
