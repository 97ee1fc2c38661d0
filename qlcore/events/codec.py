"""Turning events into stored rows and back, losslessly.

An event is stored as its type name and a JSON object of its fields. Decimals travel as strings so
that a round trip gives back the very same `Decimal` (same digits, same exponent), which is what
makes a replayed state hash equal the live one.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from decimal import Decimal
from enum import Enum
from types import UnionType
from typing import Any

import orjson

from qlcore.events.types import EVENT_TYPES, Event


class EventDecodeError(ValueError):
    """A stored payload that does not decode into its event type."""


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} in an event")


def _converter(tp: Any) -> Callable[[Any], Any] | None:
    origin = typing.get_origin(tp)
    if tp is Decimal:
        return Decimal
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp._value2member_map_.__getitem__  # a dict look-up: far cheaper than Enum(value)
    if origin in (typing.Union, UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _converter(args[0]) if len(args) == 1 else None
        if inner is None:
            return None
        return lambda v: None if v is None else inner(v)
    if origin is tuple:
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            item = _converter(items[0])
            if item is None:
                return tuple
            return lambda v: tuple(item(x) for x in v)
        convs = [_converter(a) for a in items]
        return lambda v: tuple(c(x) if c else x for c, x in zip(convs, v, strict=True))
    return None


class _Spec:
    __slots__ = ("build", "cls", "convs", "names")

    def __init__(self, cls: type[Event]) -> None:
        hints = typing.get_type_hints(cls)
        self.cls = cls
        self.names = tuple(f.name for f in dataclasses.fields(cls))
        self.convs = tuple((n, _converter(hints[n])) for n in self.names)
        self.build = self._compile()

    def _shape_error(self, data: Any) -> None:
        name = self.cls.__name__
        if not isinstance(data, dict):
            raise EventDecodeError(f"{name}: payload is not a JSON object")
        extra = sorted(set(data) - set(self.names))
        missing = [n for n in self.names if n not in data]
        raise EventDecodeError(f"{name}: missing fields {missing}, unexpected fields {extra}")

    def _compile(self) -> Callable[[dict], Event]:
        """A constructor from the decoded dict, written out per type (as dataclasses do).

        This is replay's hot path, so it fills the slots directly instead of going through the
        frozen `__init__` (which costs an `object.__setattr__` call per field). Events are plain
        facts with no `__post_init__`, so the result is the same object `cls(...)` would build.
        """
        if hasattr(self.cls, "__post_init__"):
            raise TypeError(f"{self.cls.__name__}: events must not define __post_init__")
        env: dict[str, Any] = {
            "cls": self.cls,
            "Decimal": Decimal,
            "new": object.__new__,
            "bad": _not_a_decimal,
            "shape": self._shape_error,
            "dict": dict,
        }
        lines = [
            "def build(d):",
            f"    if type(d) is not dict or len(d) != {len(self.convs)}:",
            "        shape(d)",
            "    o = new(cls)",
        ]
        for i, (name, conv) in enumerate(self.convs):
            env[f"s{i}"] = getattr(self.cls, name).__set__
            if conv is None:
                value = f"d[{name!r}]"
            elif conv is Decimal:
                # Decimals travel as strings; a JSON number would bring binary noise back in
                value = f"(Decimal(v) if type(v := d[{name!r}]) is str else bad({name!r}, v))"
            else:
                env[f"c{i}"] = conv
                value = f"(None if (v := d[{name!r}]) is None else c{i}(v))"
            lines.append(f"    s{i}(o, {value})")
        lines.append("    return o")
        exec("\n".join(lines) + "\n", env)
        return env["build"]


def _not_a_decimal(name: str, value: object) -> Decimal:
    raise ValueError(f"field {name!r}: a Decimal must be stored as a string, got {value!r}")


_SPECS: dict[type, _Spec] = {}


def _spec(cls: type) -> _Spec:
    spec = _SPECS.get(cls)
    if spec is None:
        spec = _SPECS[cls] = _Spec(cls)
    return spec


def encode(event: Event) -> tuple[str, bytes]:
    """Return (type name, JSON payload) of an event."""
    cls = type(event)
    names = _spec(cls).names
    payload = orjson.dumps({n: getattr(event, n) for n in names}, default=_default)
    return cls.__name__, payload


class _Builders(dict):
    """Event type name -> compiled builder, filled on first use."""

    def __missing__(self, type_name: str) -> Callable[[Any], Event]:
        cls = EVENT_TYPES.get(type_name)
        if cls is None:
            raise EventDecodeError(f"unknown event type {type_name!r}")
        build = self[type_name] = _spec(cls).build
        return build


_BUILDERS: dict[str, Callable[[Any], Event]] = _Builders()


def decode(type_name: str, payload: bytes | str) -> Event:
    """Rebuild an event from its stored type name and payload; raise `EventDecodeError` if it does not fit."""
    try:
        return _BUILDERS[type_name](orjson.loads(payload))
    except EventDecodeError:
        raise
    except Exception as exc:
        raise EventDecodeError(f"{type_name}: {type(exc).__name__}: {exc}") from None
