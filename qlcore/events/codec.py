"""Turning events into stored rows and back, losslessly.

Two forms, one set of rules (Decimals travel as strings, so that a round trip gives back the very
same `Decimal`, same digits and same exponent, which is what makes a replayed state hash equal the
live one; enums travel as their values):

* `encode` / `decode`: the type name and a JSON object of the fields, self-describing, for the
  audit log and for people;
* `pack` / `unpack` / `unpack_many`: the event store's row payload, a JSON array of the type name
  followed by the field values in declaration order, e.g.
  ``["OrderSubmitted",1577957400000000000,"O-1"]``. Half the size of the object form, and about
  twice as fast to read back, which is replay's hot path.
"""
from __future__ import annotations

import dataclasses
import operator
import typing
from collections.abc import Callable, Sequence
from decimal import Decimal
from enum import Enum
from types import UnionType
from typing import Any

import orjson

from qlcore.events.types import EVENT_TYPES, Event


class EventDecodeError(ValueError):
    """A stored payload that does not decode into its event type."""

    index: int | None = None  # the payload's position in the batch given to `unpack_many`


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} in an event")


def _decimal(value: object) -> Decimal:
    # Decimals travel as strings; a JSON number would bring binary noise back in
    if type(value) is not str:
        raise ValueError(f"a Decimal must be stored as a string, got {value!r}")
    return Decimal(value)


def _converter(tp: Any) -> Callable[[Any], Any] | None:
    origin = typing.get_origin(tp)
    if tp is Decimal:
        return _decimal
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


def _optional_decimal(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, UnionType) and set(typing.get_args(tp)) == {Decimal, type(None)}


class _Spec:
    """What the codec knows of one event type: its fields and compiled builders."""

    __slots__ = ("build", "cls", "convs", "fields", "names", "unpack", "values")

    def __init__(self, cls: type[Event]) -> None:
        if hasattr(cls, "__post_init__"):
            raise TypeError(f"{cls.__name__}: events must not define __post_init__")
        hints = typing.get_type_hints(cls)
        self.cls = cls
        self.names = tuple(f.name for f in dataclasses.fields(cls))
        self.fields = tuple((n, hints[n]) for n in self.names)
        self.convs = tuple((n, _converter(hints[n])) for n in self.names)
        self.build = self._compile_from_dict()
        self.unpack = self._compile_from_array()
        getter = operator.attrgetter(*self.names)
        # attrgetter of one name gives the value itself, of several a tuple
        self.values: Callable[[Event], tuple] = getter if len(self.names) > 1 else lambda e: (getter(e),)

    def _shape_error(self, data: Any) -> None:
        name = self.cls.__name__
        if not isinstance(data, dict):
            raise EventDecodeError(f"{name}: payload is not a JSON object")
        extra = sorted(set(data) - set(self.names))
        missing = [n for n in self.names if n not in data]
        raise EventDecodeError(f"{name}: missing fields {missing}, unexpected fields {extra}")

    def _environment(self) -> dict[str, Any]:
        """Names the generated builders use: the class, its slot setters and the field converters.

        The builders fill the slots directly instead of going through the frozen `__init__` (which
        costs an `object.__setattr__` call per field). Events are plain facts with no
        `__post_init__`, so the result is the same object `cls(...)` would build.
        """
        env: dict[str, Any] = {"cls": self.cls, "new": object.__new__, "Decimal": Decimal, "bad": _not_a_decimal}
        for i, (name, conv) in enumerate(self.convs):
            env[f"s{i}"] = getattr(self.cls, name).__set__
            env[f"c{i}"] = conv
        return env

    def _value(self, i: int, var: str) -> str:
        """The expression that turns the stored value in `var` into field `i`'s value."""
        name, conv = self.convs[i]
        if conv is None:
            return var
        if conv is _decimal:
            return f"(Decimal({var}) if type({var}) is str else bad({name!r}, {var}))"
        if _optional_decimal(self.fields[i][1]):
            return f"(None if {var} is None else Decimal({var}) if type({var}) is str else bad({name!r}, {var}))"
        return f"(None if {var} is None else c{i}({var}))"

    def _compile_from_dict(self) -> Callable[[dict], Event]:
        env = self._environment()
        env["shape"] = self._shape_error
        lines = [
            "def build(d):",
            f"    if type(d) is not dict or len(d) != {len(self.names)}:",
            "        shape(d)",
            "    o = new(cls)",
        ]
        for i, name in enumerate(self.names):
            lines.append(f"    v = d[{name!r}]")
            lines.append(f"    s{i}(o, {self._value(i, 'v')})")
        lines.append("    return o")
        return _compiled("build", lines, env)

    def _compile_from_array(self) -> Callable[[list], Event]:
        """The builder from a packed array, written out per type (as dataclasses do).

        It checks nothing that costs time: a wrong length or value raises some exception, and
        `unpack` works out which and why.
        """
        env = self._environment()
        variables = [f"f{i}" for i in range(len(self.names))]
        lines = [
            "def unpack(a):",
            f"    _, {', '.join(variables)}, = a",
            "    o = new(cls)",
        ]
        lines += [f"    s{i}(o, {self._value(i, var)})" for i, var in enumerate(variables)]
        lines.append("    return o")
        return _compiled("unpack", lines, env)


def _compiled(name: str, lines: list[str], env: dict[str, Any]) -> Callable[[Any], Event]:
    exec("\n".join(lines) + "\n", env)
    return env[name]


def _not_a_decimal(name: str, value: object) -> Decimal:
    raise ValueError(f"field {name!r}: a Decimal must be stored as a string, got {value!r}")


_SPECS: dict[type, _Spec] = {}


def _spec(cls: type) -> _Spec:
    spec = _SPECS.get(cls)
    if spec is None:
        spec = _SPECS[cls] = _Spec(cls)
    return spec


def _spec_named(type_name: str) -> _Spec:
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise EventDecodeError(f"unknown event type {type_name!r}")
    return _spec(cls)


# --- the object form ------------------------------------------------------------------------------
def encode(event: Event) -> tuple[str, bytes]:
    """Return (type name, JSON object payload) of an event."""
    cls = type(event)
    names = _spec(cls).names
    payload = orjson.dumps({n: getattr(event, n) for n in names}, default=_default)
    return cls.__name__, payload


class _Builders(dict):
    """Event type name -> compiled builder from the JSON object, filled on first use."""

    def __missing__(self, type_name: str) -> Callable[[Any], Event]:
        build = self[type_name] = _spec_named(type_name).build
        return build


_BUILDERS: dict[str, Callable[[Any], Event]] = _Builders()


def decode(type_name: str, payload: bytes | str) -> Event:
    """Rebuild an event from its type name and JSON object; raise `EventDecodeError` if it does not fit."""
    try:
        return _BUILDERS[type_name](orjson.loads(payload))
    except EventDecodeError:
        raise
    except Exception as exc:
        raise EventDecodeError(f"{type_name}: {type(exc).__name__}: {exc}") from None


# --- the packed form (the event store's payload) --------------------------------------------------
def pack(event: Event) -> bytes:
    """The JSON array ``[type name, field values...]`` of an event, as UTF-8."""
    cls = type(event)
    return orjson.dumps((cls.__name__, *_spec(cls).values(event)), default=_default)


class _Unpackers(dict):
    """Event type name -> compiled builder from the packed array, filled on first use."""

    def __missing__(self, type_name: str) -> Callable[[list], Event]:
        if type(type_name) is not str:
            raise EventDecodeError(f"the event type name is not a string: {type_name!r}")
        unpack = self[type_name] = _spec_named(type_name).unpack
        return unpack


_UNPACKERS: dict[str, Callable[[list], Event]] = _Unpackers()


def unpack(payload: bytes | str) -> Event:
    """Rebuild an event from its packed payload; raise `EventDecodeError` naming what does not fit."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"payload is not JSON: {exc}") from None
    if type(data) is not list or not data or type(data[0]) is not str:
        raise EventDecodeError(f"payload is not a JSON array starting with an event type name: {payload[:60]!r}")
    type_name = data[0]
    spec = _spec_named(type_name)
    if len(data) - 1 != len(spec.names):
        raise EventDecodeError(
            f"{type_name}: {len(data) - 1} values for {len(spec.names)} fields ({', '.join(spec.names)})"
        )
    try:
        return spec.unpack(data)
    except Exception as exc:
        raise EventDecodeError(f"{type_name}: {type(exc).__name__}: {exc}") from None


def unpack_many(payloads: Sequence[bytes | str]) -> list[Event]:
    """Unpack payloads in order (replay's hot loop); the first bad one raises `EventDecodeError` with its `index`."""
    loads = orjson.loads
    unpackers = _UNPACKERS
    events: list[Event] = []
    append = events.append
    try:
        for payload in payloads:
            data = loads(payload)
            append(unpackers[data[0]](data))
    except Exception:
        # the loop above checks nothing itself; `unpack` says what is wrong with the payload
        index = len(events)
        try:
            unpack(payloads[index])
        except EventDecodeError as exc:
            exc.index = index
            raise
        raise AssertionError(f"payload {index} failed to unpack in a batch but not alone") from None
    return events
