"""The event codec round-trips every event type exactly; bad payloads raise naming the type."""
from __future__ import annotations

import dataclasses
import math
import typing
from decimal import Decimal
from enum import Enum
from types import UnionType

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlcore.events.codec import EventDecodeError, decode, encode, pack, unpack, unpack_many
from qlcore.events.types import EVENT_TYPES, Event, OrderFilled
from qlcore.model.enums import OrderSide
from qlcore.model.money import to_decimal

D = Decimal

# finite Decimals of any sign, digit count and exponent, including -0 and 1E+3
decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.builds(
        lambda sign, digits, exponent: Decimal((sign, tuple(digits), exponent)),
        st.integers(0, 1),
        st.lists(st.integers(0, 9), min_size=1, max_size=40),
        st.integers(-30, 10),
    ),
)


def strategy_for(tp: object) -> st.SearchStrategy:
    """Values for a field of the given (resolved) type hint."""
    origin = typing.get_origin(tp)
    if tp is int:
        return st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what JSON stores natively
    if tp is str:
        return st.text()
    if tp is bool:
        return st.booleans()
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)  # JSON has no NaN or infinity
    if tp is Decimal:
        return decimals
    if isinstance(tp, type) and issubclass(tp, Enum):
        return st.sampled_from(list(tp))
    if origin in (typing.Union, UnionType):
        args = typing.get_args(tp)
        return st.one_of(*(st.none() if a is type(None) else strategy_for(a) for a in args))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=5).map(tuple)
        return st.tuples(*(strategy_for(a) for a in args))
    raise AssertionError(f"no strategy for field type {tp!r}: extend strategy_for")


def events_of(cls: type[Event]) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


def exact(value: object) -> object:
    """A rendering in which Decimals that are equal but written differently (1.0, 1.00) differ."""
    if isinstance(value, Decimal):
        return ("Decimal", value.as_tuple())
    if isinstance(value, Enum):
        return (type(value).__name__, value.value)
    if isinstance(value, tuple):
        return tuple(exact(v) for v in value)
    return (type(value).__name__, value)


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_event_type_round_trips_to_an_equal_event_with_the_same_exponents(type_name, data):
    cls = EVENT_TYPES[type_name]
    event = data.draw(events_of(cls))

    name, payload = encode(event)
    back = decode(name, payload)

    assert name == type_name
    assert type(back) is cls
    assert back == event
    for f in dataclasses.fields(cls):
        assert exact(getattr(back, f.name)) == exact(getattr(event, f.name)), f.name
    # and decoding from text rather than bytes gives the same
    assert decode(name, payload.decode()) == event

    # the store's packed form keeps the same values, exponents included
    packed = pack(event)
    assert orjson.loads(packed)[0] == type_name
    for back in (unpack(packed), unpack(packed.decode()), unpack_many([packed])[0]):
        assert type(back) is cls and back == event
        for f in dataclasses.fields(cls):
            assert exact(getattr(back, f.name)) == exact(getattr(event, f.name)), f.name


def test_decimal_exponents_survive_a_round_trip():
    event = OrderFilled(
        1, "O-1", "T-1", "s", "AAPL", OrderSide.SELL, D("10.0"), D("-0.00"), D("1E+2")
    )
    back = decode(*encode(event))
    assert [str(back.quantity), str(back.price), str(back.fee)] == ["10.0", "-0.00", "1E+2"]
    assert back.side is OrderSide.SELL


# --- payloads that do not decode -----------------------------------------------------------------

FILL = OrderFilled(1, "O-1", "T-1", "s", "AAPL", OrderSide.BUY, D(10), D("101.25"), D("0.50"))


def fill_payload(**changes: object) -> bytes:
    """The stored payload of FILL with fields replaced (a value of `...` removes the field)."""
    data = orjson.loads(encode(FILL)[1])
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return orjson.dumps(data)


def test_unknown_type_name_raises_naming_it():
    with pytest.raises(EventDecodeError, match="OrderTeleported"):
        decode("OrderTeleported", b"{}")


def test_missing_field_raises_naming_the_type():
    with pytest.raises(EventDecodeError, match="OrderFilled"):
        decode("OrderFilled", fill_payload(fee=...))


def test_missing_field_raises_naming_the_field():
    with pytest.raises(EventDecodeError, match="fee"):
        decode("OrderFilled", fill_payload(fee=...))


def test_extra_field_raises_naming_the_type_and_the_field():
    with pytest.raises(EventDecodeError, match=r"OrderFilled.*bogus"):
        decode("OrderFilled", fill_payload(bogus=1))


def test_renamed_field_raises_naming_the_type():
    with pytest.raises(EventDecodeError, match="OrderFilled"):
        decode("OrderFilled", fill_payload(fee=..., fees="0.50"))


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"", b"[]", b"null", b'"text"'],
    ids=["broken", "empty", "list", "null", "string"],
)
def test_payload_that_is_not_a_json_object_raises_naming_the_type(payload):
    with pytest.raises(EventDecodeError, match="OrderFilled"):
        decode("OrderFilled", payload)


@pytest.mark.parametrize(
    "changes",
    [{"price": "abc"}, {"price": ""}, {"fee": None}, {"side": "HOLD"}],
    ids=["garbage-decimal", "empty-decimal", "null-decimal", "unknown-enum-value"],
)
def test_bad_field_value_raises_naming_the_type(changes):
    with pytest.raises(EventDecodeError, match="OrderFilled"):
        decode("OrderFilled", fill_payload(**changes))


def test_json_number_for_a_decimal_field_is_refused_or_read_exactly():
    try:
        event = decode("OrderFilled", fill_payload(price=0.1))
    except EventDecodeError:
        return
    assert event.price == D("0.1")


# --- packed payloads (the event store's) that do not unpack --------------------------------------


def packed_fill(**changes: object) -> bytes:
    """The packed payload of FILL with fields replaced by name."""
    data = orjson.loads(pack(FILL))
    names = [f.name for f in dataclasses.fields(OrderFilled)]
    for key, value in changes.items():
        data[1 + names.index(key)] = value
    return orjson.dumps(data)


def test_packed_payload_is_the_type_name_then_the_fields_in_order():
    assert orjson.loads(pack(FILL)) == ["OrderFilled", 1, "O-1", "T-1", "s", "AAPL", "BUY", "10", "101.25", "0.50"]


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b"[]", "not a JSON array starting with an event type name"),
        (b'{"ts": 1}', "not a JSON array starting with an event type name"),
        (b"[1, 2]", "not a JSON array starting with an event type name"),
        (b'["OrderTeleported", 1]', "unknown event type 'OrderTeleported'"),
        (b'["OrderFilled", 1, "O-1"]', r"OrderFilled: 2 values for 9 fields \(ts, order_id, trade_id"),
        (packed_fill(price="abc"), "OrderFilled: InvalidOperation"),
        (packed_fill(price=0.1), "OrderFilled: .*'price': a Decimal must be stored as a string, got 0.1"),
        (packed_fill(fee=None), "OrderFilled: .*'fee': a Decimal must be stored as a string"),
        (packed_fill(side="HOLD"), "OrderFilled: KeyError: 'HOLD'"),
    ],
    ids=["broken", "empty", "empty-array", "object", "no-type-name", "unknown-type", "too-few-values",
         "garbage-decimal", "float-decimal", "null-decimal", "unknown-enum-value"],
)
def test_bad_packed_payload_raises_saying_what_is_wrong(payload, reason):
    with pytest.raises(EventDecodeError, match=reason):
        unpack(payload)


def test_optional_decimal_stored_as_a_number_is_refused():
    from qlcore.events.types import OrderInitialized
    from qlcore.model.enums import OrderType

    order = OrderInitialized(1, "O-1", "s", "AAPL", OrderSide.BUY, OrderType.LIMIT, D(1), D("1.5"))
    data = orjson.loads(pack(order))
    data[8] = 1.5  # price
    with pytest.raises(EventDecodeError, match="'price': a Decimal must be stored as a string"):
        unpack(orjson.dumps(data))


def test_unpack_many_names_the_index_of_the_first_bad_payload():
    good = pack(FILL)
    with pytest.raises(EventDecodeError, match="OrderFilled: 2 values") as err:
        unpack_many([good, good, b'["OrderFilled", 1, "O-1"]', b"garbage"])
    assert err.value.index == 2
    assert unpack_many([good, good]) == [FILL, FILL]


# --- to_decimal ----------------------------------------------------------------------------------


def test_to_decimal_of_a_float_has_no_binary_noise():
    assert to_decimal(0.1).as_tuple() == D("0.1").as_tuple()
    assert to_decimal(101.25) == D("101.25")
    assert to_decimal(-2.5) == D("-2.5")


def test_to_decimal_of_ints_is_exact():
    assert to_decimal(7).as_tuple() == D(7).as_tuple()
    assert to_decimal(-3) == D(-3)
    assert to_decimal(10**30) == D(10**30)


def test_to_decimal_of_strings_keeps_the_written_digits():
    assert to_decimal("1.50").as_tuple() == D("1.50").as_tuple()
    assert to_decimal("  -3 ") == D(-3)
    assert to_decimal("1e3") == D(1000)


def test_to_decimal_returns_a_decimal_unchanged():
    value = D("2.500")
    assert to_decimal(value) is value


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, "NaN", "inf", "-Infinity", "abc", "", "1,5", None, [1]],
    ids=repr,
)
def test_to_decimal_of_non_finite_or_garbage_raises_value_error(value):
    with pytest.raises(ValueError):
        to_decimal(value)


def test_to_decimal_of_a_non_finite_decimal_raises_value_error():
    with pytest.raises(ValueError):
        to_decimal(D("NaN"))


def test_to_decimal_of_numpy_integer_and_float32_scalars():
    np = pytest.importorskip("numpy")
    assert to_decimal(np.int64(3)) == D(3)
    assert to_decimal(np.float32(0.5)) == D("0.5")
    with pytest.raises(ValueError):
        to_decimal(np.float64("nan"))


def test_to_decimal_of_numpy_float64_has_no_binary_noise():
    np = pytest.importorskip("numpy")
    # np.float64 subclasses float, and numpy 2 writes its repr as "np.float64(0.1)"
    assert to_decimal(np.float64(0.1)).as_tuple() == D("0.1").as_tuple()
    assert to_decimal(np.float64(-101.25)) == D("-101.25")
