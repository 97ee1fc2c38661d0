"""Static order validation: is this order well formed for its instrument?"""
from __future__ import annotations

from qlcore.model.enums import OrderType
from qlcore.model.instruments import Instrument
from qlcore.model.orders import Order


def validate_order(order: Order, instrument: Instrument | None) -> str | None:
    """Return None for a well-formed order, else a reason naming the field and the value."""
    if instrument is None:
        return f"symbol: unknown instrument {order.symbol!r}"
    if order.quantity <= 0:
        return f"quantity: must be > 0, got {order.quantity}"
    if order.quantity % instrument.lot_size:
        return f"quantity: {order.quantity} is not a multiple of lot size {instrument.lot_size}"
    t = order.order_type
    needs_price = t in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_trigger = t in (OrderType.STOP, OrderType.STOP_LIMIT)
    if needs_price and order.price is None:
        return f"price: a {t.value} order needs a limit price"
    if not needs_price and order.price is not None:
        return f"price: a {t.value} order takes no limit price (got {order.price})"
    if needs_trigger and order.trigger_price is None:
        return f"trigger_price: a {t.value} order needs a trigger price"
    if not needs_trigger and order.trigger_price is not None:
        return f"trigger_price: a {t.value} order takes no trigger price (got {order.trigger_price})"
    for field, value in (("price", order.price), ("trigger_price", order.trigger_price)):
        if value is not None and not instrument.is_valid_price(value):
            return f"{field}: {value} is not a positive multiple of tick size {instrument.tick_size}"
    return None
