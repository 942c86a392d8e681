"""The cattrs converter between config objects and plain data, and its error reporting.

Component configs form tagged unions keyed by ``name``: ``{name = "mlp", state_dim = 16}``
becomes the config class registered as ``mlp`` for the field's kind. Scalars are strict (no
``"3"`` for an int, no ``1`` for a bool), unknown keys are errors that suggest their close
match, and every problem in a table is reported at once with its dotted path, e.g.
``model.decoder.stat_dim: unknown key 'stat_dim'; did you mean 'state_dim'? ...``.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from prakit import registry
from prakit.errors import ConfigError, UnknownNameError
from prakit.kinds import CONFIG_BASES, ComponentConfig

_converter: tuple[object, cattrs.Converter] | None = None


def get_converter() -> cattrs.Converter:
    """The converter for the components registered now (rebuilt when plugins change)."""
    global _converter
    registries = registry.registries()
    if _converter is None or _converter[0] is not registries:
        _converter = (registries, _make_converter())
    return _converter[1]


def structure(data: Any, cls: type, source: str | None = None) -> Any:
    """Plain data -> config object, or a :class:`ConfigError` listing every problem by path."""
    converter = get_converter()
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a path-keyed ConfigError
        raise ConfigError(list(_problems(exc, "")), source) from None


def unstructure(obj: Any) -> Any:
    """Config object -> plain data (dicts, lists, scalars); ``None`` fields are left out."""
    return _drop_none(get_converter().unstructure(obj))


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True)  # unknown keys: see _tables_only
    for tp, (check, what) in SCALARS.items():
        conv.register_structure_hook(tp, functools.partial(_strict, check=check, what=what))
    conv.register_structure_hook_func(_is_scalar_union, _structure_scalar_union)

    def is_component_base(tp: Any) -> bool:
        return tp in CONFIG_BASES

    def structure_component(value: Any, base: type) -> ComponentConfig:
        if not isinstance(value, dict):
            raise TypeError(f"expected a table with a 'name' key, got {value!r}")
        reg = registry.get(base.kind)
        if "name" not in value:
            raise ValueError(f"missing 'name' (one of: {', '.join(reg.names()) or 'none installed'})")
        if not isinstance(value["name"], str):
            raise TypeError(f"'name' must be a string, got {value['name']!r}")
        cls = reg.entry(value["name"]).config_class
        return conv.structure({k: v for k, v in value.items() if k != "name"}, cls)

    @functools.cache
    def unstructure_fields(cls: type) -> Any:
        return make_dict_unstructure_fn(cls, conv)

    def unstructure_component(obj: ComponentConfig) -> dict[str, Any]:
        return {"name": obj.name, **unstructure_fields(type(obj))(obj)}

    conv.register_structure_hook_func(is_component_base, structure_component)
    conv.register_structure_hook_factory(
        lambda tp: attrs.has(tp) and not is_component_base(tp),
        lambda tp: _tables_only(tp, make_dict_structure_fn(tp, conv), conv),
    )
    conv.register_unstructure_hook_func(
        lambda tp: isinstance(tp, type) and issubclass(tp, ComponentConfig), unstructure_component
    )
    conv.register_unstructure_hook_factory(
        lambda tp: attrs.has(tp) and not issubclass(tp, ComponentConfig),
        lambda tp: make_dict_unstructure_fn(tp, conv),
    )
    return conv


#: The scalar types a config field may have: how a value is checked, and what the error calls it.
SCALARS: dict[type, tuple[Any, str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def _strict(value: Any, tp: type, *, check, what: str) -> Any:
    if not check(value):
        raise TypeError(f"expected {what}, got {value!r}")
    return tp(value)


def _scalar_members(tp: Any) -> list[type]:
    return [member for member in typing.get_args(tp) if member is not type(None)]


def _is_scalar_union(tp: Any) -> bool:
    """A union of two or more scalar types (``int | str``; ``X | None`` alone is cattrs' own)."""
    members = _scalar_members(tp)
    return (typing.get_origin(tp) in (typing.Union, types.UnionType) and len(members) > 1
            and all(member in SCALARS for member in members))


def _structure_scalar_union(value: Any, tp: Any) -> Any:
    """The value as the first member type that takes it."""
    if value is None and type(None) in typing.get_args(tp):
        return None
    members = _scalar_members(tp)
    for member in members:
        if SCALARS[member][0](value):
            return member(value)
    raise TypeError(f"expected {' or '.join(SCALARS[m][1] for m in members)}, got {value!r}")


class _FieldError(TypeError):
    """A field holds the wrong shape of value; carries the field name for the error path."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _tables_only(cls: type, structure_fn, conv: cattrs.Converter):
    """Refuse a scalar where a table belongs, a scalar or string where a list belongs, and unknown
    keys (each with its close match), reporting them together with the problems of the known keys."""
    fields = attrs.fields(attrs.resolve_types(cls))
    known = [f.name for f in fields if f.init]
    list_fields = [f.name for f in fields if typing.get_origin(f.type) is tuple]

    def structure_table(value: Any, tp: type) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected a table, got {value!r}")
        problems: list[Exception] = [
            _FieldError(key, str(UnknownNameError("key", str(key), known))) for key in value if key not in known
        ]
        not_lists = [name for name in list_fields if name in value and not isinstance(value[name], (list, tuple))]
        problems += [_FieldError(name, f"expected a list, got {value[name]!r}") for name in not_lists]
        value = {k: v for k, v in value.items() if k in known and k not in not_lists}
        try:
            result = structure_fn(value, tp)
        except Exception as exc:  # noqa: BLE001 - reported with the unknown keys below
            problems += [exc, *_unreported_problems(exc, value, fields, conv)]
        if problems:
            raise cattrs.ClassValidationError(f"while structuring {cls.__name__}", problems, cls)
        return result

    return structure_table


def _unreported_problems(exc: Exception, value: dict, fields, conv: cattrs.Converter) -> list[Exception]:
    """The validator failures of the fields ``exc`` does not name (attrs stops at the first)."""
    reported = {path.split(".")[0] for path, _ in _problems(exc, "")}
    found = []
    for f in fields:
        if f.validator is None or f.name in reported or f.name not in value:
            continue
        try:
            item = conv.structure(value[f.name], f.type)
        except Exception:  # noqa: BLE001 - a value that does not structure is among the reported problems
            continue
        try:
            f.validator(None, f, item)
        except (TypeError, ValueError) as problem:
            found.append(problem)
        except AttributeError:  # a check against other fields (``self.width``) needs the instance: not here
            pass
    return found


_ATTRS_MESSAGE = re.compile(r"^'(\w+)' (must .*)$", re.S)


def _field_message(exc: Exception) -> tuple[str | None, str]:
    """Split an attrs validator error into (field name, message)."""
    args = exc.args
    if len(args) >= 2 and isinstance(args[1], attrs.Attribute):  # instance_of, in_, ...
        return args[1].name, str(args[0]).removeprefix(f"'{args[1].name}' ")
    match = _ATTRS_MESSAGE.match(str(args[0])) if args else None
    return (match[1], match[2]) if match else (None, str(exc) or type(exc).__name__)


def _drop_none(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None}
    if isinstance(data, (list, tuple)):
        return [_drop_none(v) for v in data]
    return data


def _join(path: str, part: object) -> str:
    return f"{path}.{part}" if path else str(part)


def _problems(exc: BaseException, path: str):
    """Flatten cattrs' nested validation errors into ``(dotted path, message)`` pairs."""
    if isinstance(exc, cattrs.BaseValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            part = note.name if hasattr(note, "name") else note.index
            yield from _problems(sub, _join(path, part))
        for sub in without:
            yield from _problems(sub, path)
    elif isinstance(exc, _FieldError):
        yield _join(path, exc.field), str(exc)
    elif isinstance(exc, UnknownNameError):
        yield _join(path, "name"), str(exc)
    elif isinstance(exc, KeyError):
        yield path, "missing required key"
    else:
        field, message = _field_message(exc)
        yield (_join(path, field) if field else path), message
