"""Hypothesis strategies for configs, derived from the attrs fields and their validators.

    from prakit.testing.strategies import configs
    @given(configs(MyDecoderConfig))
    def test_round_trip(cfg): ...

``configs(cls)`` draws valid instances: numbers within the ``gt/ge/lt/le`` bounds, strings
from a validator's ``options`` (``in_``'s), strings and tuples of at least ``min_len``, component fields from the
registered components of their kind. An integer with no upper bound is drawn at most 64 above
the larger of its lower bound and 0 (at least -64 without one), so that drawn models are small;
``configs(cls, width=st.integers(1, 8))`` draws a field from another strategy.
``mutations(data)`` breaks valid plain data (extra keys, wrong types, out-of-range numbers).
"""

from __future__ import annotations

import copy
import types
import typing
from typing import Any

import attrs
from hypothesis import reject
from hypothesis import strategies as st

from prakit import registry
from prakit.kinds import CONFIG_BASES

_BIG = 10**6  # the bound of a float without one
_SIZE = 64  # an integer without an upper bound is drawn at most this far above max(its lower bound, 0)
_ATTEMPTS = 25  # draws of a config's fields before giving the example up


def configs(cls: type, **fields: st.SearchStrategy) -> st.SearchStrategy:
    """Valid instances of the attrs class ``cls``; ``fields`` override per-field strategies."""
    if cls in CONFIG_BASES:
        return registered_configs(cls.kind)
    fields_strategy = field_values(cls, **fields)

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        # Cross-field validators (heads dividing width, ...) refuse some draws: draw again here
        # rather than filter, so that nested configs do not multiply into mass rejection.
        for _ in range(_ATTEMPTS):
            try:
                return cls(**draw(fields_strategy))
            except (ValueError, TypeError):
                continue
        reject()

    return build()


def field_values(cls: type, **fields: st.SearchStrategy) -> st.SearchStrategy:
    """The init arguments of the attrs class ``cls``, each drawn within its own field's validators
    (a validator relating several fields may still refuse them)."""
    attrs.resolve_types(cls)
    return st.fixed_dictionaries({f.name: fields[f.name] if f.name in fields else _field_strategy(f)
                                  for f in attrs.fields(cls) if f.init})


def registered_configs(kind: str) -> st.SearchStrategy:
    """Valid configs of every registered component of ``kind``."""
    entries = registry.get(kind).entries()
    if not entries:
        return st.nothing()
    return st.one_of([configs(e.config_class) for e in entries])


def mutations(data: dict[str, Any]) -> st.SearchStrategy:
    """Plain config data with one random change: an extra key, a wrong-typed, out-of-range or
    removed value, or a scalar where a table belongs."""
    leaves = list(_leaf_paths(data))
    tables = list(_table_paths(data))

    @st.composite
    def mutate(draw):
        out = copy.deepcopy(data)
        action = draw(st.sampled_from(["extra", "wrong", "number", "remove", "table"]))
        if action == "extra" or not leaves:
            key = draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
            _get(out, draw(st.sampled_from(tables)))[key] = draw(_any_value())
            return out
        path = draw(st.sampled_from(tables[1:] if action == "table" and len(tables) > 1 else leaves))
        parent, key = _get(out, path[:-1]), path[-1]
        if action == "remove":
            del parent[key]
        elif action == "number":
            parent[key] = draw(st.one_of(st.integers(-(2**40), 2**40), st.floats()))
        else:
            parent[key] = draw(_any_value())
        return out

    return mutate()


def _any_value() -> st.SearchStrategy:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)
    )
    return st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2))


def _field_strategy(field: attrs.Attribute) -> st.SearchStrategy:
    tp = field.type
    validators = list(_flatten_validators(field.validator))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _type_strategy(args[0], validators)
        return st.one_of(st.none(), inner) if type(None) in typing.get_args(tp) else inner
    return _type_strategy(tp, validators)


def _type_strategy(tp: Any, validators: list) -> st.SearchStrategy:
    options = next((v.options for v in validators if hasattr(v, "options")), None)
    min_size = max((v.min_length for v in validators if hasattr(v, "min_length")), default=0)
    if options is not None:
        return st.sampled_from(sorted(options, key=repr))
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        members = [m for v in validators if hasattr(v, "member_validator") for m in _flatten_validators(v.member_validator)]
        if len(args) == 2 and args[1] is Ellipsis:
            items = _type_strategy(args[0], members)
            return st.just(()) if items.is_empty else st.lists(items, min_size=min_size, max_size=3).map(tuple)
        return st.tuples(*(_type_strategy(a, members) for a in args))
    if typing.get_origin(tp) is dict:
        keys, values = typing.get_args(tp)
        names = st.from_regex(r"[a-z][a-z0-9_-]{0,11}", fullmatch=True) if keys is str else _type_strategy(keys, [])
        return st.dictionaries(names, _type_strategy(values, []), max_size=2)
    if attrs.has(tp) or tp in CONFIG_BASES:
        return configs(tp)
    lo, hi, lo_open, hi_open = _bounds(validators)
    if tp is bool:
        return st.booleans()
    if tp is int:
        low = -_SIZE if lo is None else int(lo) + int(lo_open)
        high = max(low, 0) + _SIZE if hi is None else int(hi) - int(hi_open)
        small = st.integers(max(low, min(0, high)), min(high, max(low, 0) + 16))
        powers = [2**k for k in range(21) if low <= 2**k <= high]  # round sizes: they divide each other
        return st.one_of(small, *([st.sampled_from(powers)] if powers else []), st.integers(low, high))
    if tp is float:
        return st.floats(
            min_value=-_BIG if lo is None else lo,
            max_value=_BIG if hi is None else hi,
            exclude_min=lo_open,
            exclude_max=hi_open,
            allow_nan=False,
            allow_infinity=False,
        )
    if tp is str:
        return st.text("abcdefghijklmnopqrstuvwxyz0123456789_-./", min_size=min_size, max_size=16)
    raise TypeError(f"no strategy for field type {tp!r}; pass one with configs(cls, field=strategy)")


def _flatten_validators(validator: Any):
    if validator is None:
        return
    if hasattr(validator, "_validators"):  # and_ / a list of validators
        for v in validator._validators:
            yield from _flatten_validators(v)
    elif hasattr(validator, "validator"):  # optional(...)
        yield from _flatten_validators(validator.validator)
    else:
        yield validator


def _bounds(validators: list) -> tuple[float | None, float | None, bool, bool]:
    lo = hi = None
    lo_open = hi_open = False
    for v in validators:
        op = getattr(v, "compare_op", None)
        if op in (">", ">="):
            lo, lo_open = v.bound, op == ">"
        elif op in ("<", "<="):
            hi, hi_open = v.bound, op == "<"
    return lo, hi, lo_open, hi_open


def _leaf_paths(data: Any, prefix: tuple = ()):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaf_paths(value, prefix + (key,)) if isinstance(value, dict) else [prefix + (key,)]


def _table_paths(data: Any, prefix: tuple = ()):
    if isinstance(data, dict):
        yield prefix
        for key, value in data.items():
            yield from _table_paths(value, prefix + (key,))


def _get(data: dict, path: tuple) -> Any:
    for key in path:
        data = data[key]
    return data
