"""Trading state as a fold over events: orders, positions, cash, marks.

The live engine and a replay build their state with the same `TradingState.apply`, which is why a
replayed state hash must equal the live one. `state_hash` covers every value that defines the state.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from qlcore.events.types import (
    ORDER_EVENTS,
    UNFOLDED,
    AccountFunded,
    Event,
    MarksUpdated,
    OrderFilled,
    OrderInitialized,
    RiskLimitsChanged,
    RunFinished,
    RunStarted,
)
from qlcore.model.enums import OrderSide
from qlcore.model.money import ZERO, canonical
from qlcore.model.orders import Order
from qlcore.model.positions import Position


class UnknownOrderError(KeyError):
    def __init__(self, order_id: str, event: Event) -> None:
        super().__init__(f"{type(event).__name__} for unknown order {order_id!r}")
        self.order_id = order_id


class TradingState:
    """Everything the engine knows about its trading, rebuilt by applying events in order."""

    __slots__ = ("_dispatch", "cash", "events_applied", "fees", "marks", "orders", "positions")

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.positions: dict[tuple[str, str], Position] = {}
        self.cash = ZERO
        self.fees = ZERO
        self.marks: dict[str, Decimal] = {}
        self.events_applied = 0
        # each handler takes exactly its key's event type; Any stands for that pairing
        self._dispatch: dict[type, Callable[[Any], bool]] = {
            OrderInitialized: self._on_init,
            OrderFilled: self._on_fill,
            AccountFunded: self._on_funded,
            MarksUpdated: self._on_marks,
            RunStarted: _ignore,
            RunFinished: _ignore,
            RiskLimitsChanged: _ignore,  # configuration, not trading state: kept in the log for audit
        }
        for event_type in ORDER_EVENTS:
            self._dispatch.setdefault(event_type, self._on_order_event)

    # --- folding -------------------------------------------------------------------------------
    def apply(self, event: Event) -> bool:
        """Apply one event; return False if it was a duplicate that changed nothing."""
        try:
            handler = self._dispatch[type(event)]
        except KeyError:
            if type(event) not in UNFOLDED:
                raise TypeError(f"TradingState cannot apply {type(event).__name__}") from None
            handler = _ignore
        applied = handler(event)
        if applied:
            self.events_applied += 1
        return applied

    def apply_all(self, events: Iterable[Event]) -> TradingState:
        for event in events:
            self.apply(event)
        return self

    def _on_init(self, event: OrderInitialized) -> bool:
        if event.order_id in self.orders:
            raise ValueError(f"order id {event.order_id!r} initialized twice")
        self.orders[event.order_id] = Order(event)
        return True

    def _on_order_event(self, event: Event) -> bool:
        try:
            order = self.orders[event.order_id]  # type: ignore[attr-defined]
        except KeyError:
            raise UnknownOrderError(event.order_id, event) from None  # type: ignore[attr-defined]
        return order.apply(event)

    def _on_fill(self, event: OrderFilled) -> bool:
        order = self.orders.get(event.order_id)
        if order is None:
            raise UnknownOrderError(event.order_id, event)
        if not order.fill(event):
            return False  # the same trade id again: applied once only
        quantity = event.quantity
        price = event.price
        fee = event.fee
        signed = quantity if event.side is OrderSide.BUY else -quantity
        key = (event.strategy_id, event.symbol)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position(event.strategy_id, event.symbol)
        pos.apply_fill(signed, price, fee)
        self.cash -= signed * price + fee
        self.fees += fee
        return True

    def _on_funded(self, event: AccountFunded) -> bool:
        self.cash += event.amount
        return True

    def _on_marks(self, event: MarksUpdated) -> bool:
        for symbol, price in event.marks:
            self.marks[symbol] = price
        return True

    # --- reading -------------------------------------------------------------------------------
    def position(self, strategy_id: str, symbol: str) -> Decimal:
        pos = self.positions.get((strategy_id, symbol))
        return pos.quantity if pos is not None else ZERO

    def net_position(self, symbol: str) -> Decimal:
        return sum((p.quantity for (_, s), p in self.positions.items() if s == symbol), ZERO)

    def open_orders(self, strategy_id: str | None = None, symbol: str | None = None) -> list[Order]:
        return [
            o
            for o in self.orders.values()
            if o.status.is_open
            and (strategy_id is None or o.strategy_id == strategy_id)
            and (symbol is None or o.symbol == symbol)
        ]

    def market_value(self, marks: dict[str, Decimal] | None = None) -> Decimal:
        marks = self.marks if marks is None else marks
        total = ZERO
        for (_, symbol), pos in self.positions.items():
            if pos.quantity:
                mark = marks.get(symbol)
                if mark is None:
                    raise KeyError(f"no mark price for {symbol} (position {pos.quantity})")
                total += pos.quantity * mark
        return total

    def equity(self, marks: dict[str, Decimal] | None = None) -> Decimal:
        return self.cash + self.market_value(marks)

    def realized_pnl(self) -> Decimal:
        return sum((p.realized_pnl for p in self.positions.values()), ZERO)

    def state_hash(self) -> str:
        """SHA-256 over a canonical rendering of orders, positions, cash, fees and marks."""
        records: list[tuple] = [self.orders[k].snapshot() for k in sorted(self.orders)]
        records += [self.positions[k].snapshot() for k in sorted(self.positions)]
        records.append(("cash", self.cash, "fees", self.fees))
        records += [("mark", s, self.marks[s]) for s in sorted(self.marks)]
        text = "\x1e".join(
            "\x1f".join(canonical(v) if type(v) is Decimal else str(v) for v in record) for record in records
        )
        return hashlib.sha256(text.encode()).hexdigest()


def _ignore(event: Event) -> bool:
    return True
