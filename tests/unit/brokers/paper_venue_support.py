"""Helpers for the paper venue tests: orders built from their init event, a report recorder, bars, fixtures.

A plain module rather than a conftest.py: other test folders import their own `conftest` by name.
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from qlcore.brokers.paper import PaperVenue
from qlcore.events.types import OrderInitialized
from qlcore.model.enums import OrderSide, OrderType, TimeInForce
from qlcore.model.market import Bar
from qlcore.model.orders import Order

MINUTE = 60_000_000_000
T0 = 1_764_000_000_000_000_000  # 2025-11-24 16:00 UTC, in nanoseconds


class Recorder:
    """An `ExecutionReports` that keeps every report as (name, order id, *details)."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def on_accepted(self, order_id: str, venue_order_id: str) -> None:
        self.seen.append(("accepted", order_id, venue_order_id))

    def on_rejected(self, order_id: str, reason: str) -> None:
        self.seen.append(("rejected", order_id, reason))

    def on_filled(self, order_id: str, trade_id: str, quantity: Decimal, price: Decimal, fee: Decimal) -> None:
        self.seen.append(("filled", order_id, trade_id, quantity, price, fee))

    def on_canceled(self, order_id: str, reason: str) -> None:
        self.seen.append(("canceled", order_id, reason))

    def on_cancel_rejected(self, order_id: str, reason: str) -> None:
        self.seen.append(("cancel_rejected", order_id, reason))

    def on_expired(self, order_id: str) -> None:
        self.seen.append(("expired", order_id))

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [r for r in self.seen if r[0] == name]


def make_order(
    order_id: str,
    side: OrderSide = OrderSide.BUY,
    quantity: str | int = 100,
    order_type: OrderType = OrderType.MARKET,
    *,
    symbol: str = "AAPL",
    price: str | None = None,
    trigger: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    strategy: str = "s1",
) -> Order:
    init = OrderInitialized(
        T0,
        order_id,
        strategy,
        symbol,
        side,
        order_type,
        Decimal(quantity),
        None if price is None else Decimal(price),
        None if trigger is None else Decimal(trigger),
        tif,
    )
    return Order(init)


def bar(i: int, o: float, h: float, lo: float, c: float, volume: float = 1e9, symbol: str = "AAPL") -> Bar:
    """Bar number `i` (one minute apart from T0)."""
    return Bar(symbol, T0 + i * MINUTE, o, h, lo, c, volume)


class VenueOpener:
    """Opens (and reopens) paper venues on one ledger file, bound to one recorder; closes them all at exit."""

    def __init__(self, path: Path, recorder: Recorder) -> None:
        self.path = path
        self.recorder = recorder
        self.opened: list[PaperVenue] = []

    def __call__(self, **kwargs: Any) -> PaperVenue:
        venue = PaperVenue(kwargs.pop("path", self.path), **kwargs)
        venue.bind(self.recorder)
        self.opened.append(venue)
        return venue

    def __enter__(self) -> VenueOpener:
        return self

    def __exit__(self, *exc: object) -> None:
        for venue in self.opened:
            venue.close()
