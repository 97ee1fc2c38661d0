"""The kernel: one place where orders are created, checked, sent, and every change becomes an event.

Every state change goes through `emit`: the event is applied to the `TradingState` (which checks the
order transition), appended to the store's stream, and published on the bus. The same kernel runs
backtests and, with another clock and broker, paper and live trading.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from qlcore.brokers.base import Broker
from qlcore.engine.clock import Clock
from qlcore.events.bus import EventBus
from qlcore.events.store import StreamWriter
from qlcore.events.types import (
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderInitialized,
    OrderRejected,
    OrderSubmitted,
)
from qlcore.execution.validation import validate_order
from qlcore.model.enums import OrderSide, OrderType, TimeInForce
from qlcore.model.instruments import Instrument
from qlcore.model.money import to_decimal
from qlcore.model.orders import Order
from qlcore.model.state import TradingState
from qlcore.risk.hook import AllowAll, RiskHook

if TYPE_CHECKING:
    from qlcore.strategies.base import Strategy


class OrderError(ValueError):
    """A request about an order that cannot be carried out (unknown id, not open)."""


class Kernel:
    """Wires clock, state, store, bus, risk hook and broker; owns order ids."""

    def __init__(
        self,
        *,
        clock: Clock,
        broker: Broker,
        instruments: dict[str, Instrument],
        writer: StreamWriter | None = None,
        bus: EventBus | None = None,
        risk: RiskHook | None = None,
        order_id_prefix: str = "O-",
    ) -> None:
        self.clock = clock
        self.broker = broker
        self.instruments = instruments
        self.writer = writer
        self.bus = bus or EventBus()
        self.risk = risk or AllowAll()
        self.state = TradingState()
        self.strategies: dict[str, Strategy] = {}
        self.fill_listeners: list[Callable[[OrderFilled], None]] = []
        # how a fill reaches its strategy; a strategy manager puts its guarded delivery here
        self.deliver_fill: Callable[[Strategy, OrderFilled], None] = _on_fill
        self._prefix = order_id_prefix
        self._next_order = 0
        self.events_emitted = 0
        broker.bind(self)
        bind = getattr(self.risk, "bind", None)  # a `RiskChain` makes its parts over this kernel
        if callable(bind):
            bind(self)

    # --- the one path for state changes ------------------------------------------------------
    def emit(self, event: Event) -> None:
        applied = self.state.apply(event)
        if not applied:
            return  # a duplicate fill: already applied and stored once
        if self.writer is not None:
            self.writer.append(event)
        self.events_emitted += 1
        if self.bus._all or self.bus._by_type:
            self.bus.publish(event)

    # --- orders ------------------------------------------------------------------------------
    def submit_order(
        self,
        strategy_id: str,
        symbol: str,
        side: OrderSide,
        quantity: Decimal | int | float | str,
        order_type: OrderType = OrderType.MARKET,
        price: Decimal | float | str | None = None,
        trigger_price: Decimal | float | str | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
        tags: str = "",
    ) -> str:
        """Create an order, check it, and send it. Returns its client order id (denied orders too)."""
        self._next_order += 1
        order_id = f"{self._prefix}{self._next_order}"
        now = self.clock.now
        init = OrderInitialized(
            now,
            order_id,
            strategy_id,
            symbol,
            side,
            order_type,
            to_decimal(quantity),
            None if price is None else to_decimal(price),
            None if trigger_price is None else to_decimal(trigger_price),
            time_in_force,
            tags,
        )
        self.emit(init)
        order = self.state.orders[order_id]
        reason = validate_order(order, self.instruments.get(symbol)) or self.risk.check(order, self.state)
        if reason is not None:
            self.emit(OrderDenied(now, order_id, reason))
            return order_id
        self.emit(OrderSubmitted(now, order_id))
        self.broker.submit(order)
        return order_id

    def close_position(self, strategy_id: str, symbol: str, tags: str) -> str | None:
        """Send the market order that brings `strategy_id`'s position in `symbol` to zero (None when flat)."""
        pos = self.state.positions.get((strategy_id, symbol))
        if pos is None or not pos.quantity:
            return None
        side = OrderSide.SELL if pos.quantity > 0 else OrderSide.BUY
        return self.submit_order(strategy_id, symbol, side, abs(pos.quantity), OrderType.MARKET, tags=tags)

    def cancel_order(self, order_id: str) -> None:
        order = self.state.orders.get(order_id)
        if order is None:
            raise OrderError(f"unknown order id {order_id!r}")
        if not order.is_open:
            raise OrderError(f"order {order_id} is {order.status.value}: nothing to cancel")
        self.emit(OrderCancelRequested(self.clock.now, order_id))
        self.broker.cancel(order_id)

    def order(self, order_id: str) -> Order:
        try:
            return self.state.orders[order_id]
        except KeyError:
            raise OrderError(f"unknown order id {order_id!r}") from None

    # --- execution reports (called by the broker) ---------------------------------------------
    def on_accepted(self, order_id: str, venue_order_id: str) -> None:
        self.emit(OrderAccepted(self.clock.now, order_id, venue_order_id))

    def on_rejected(self, order_id: str, reason: str) -> None:
        self.emit(OrderRejected(self.clock.now, order_id, reason))

    def on_filled(self, order_id: str, trade_id: str, quantity: Decimal, price: Decimal, fee: Decimal) -> None:
        order = self.state.orders[order_id]
        fill = OrderFilled(
            self.clock.now,
            order_id,
            trade_id,
            order.strategy_id,
            order.symbol,
            order.side,
            quantity,
            price,
            fee,
        )
        before = self.events_emitted
        self.emit(fill)
        if self.events_emitted == before:
            return  # duplicate trade id
        for listener in self.fill_listeners:
            listener(fill)
        strategy = self.strategies.get(order.strategy_id)
        if strategy is not None:
            self.deliver_fill(strategy, fill)

    def on_canceled(self, order_id: str, reason: str) -> None:
        self.emit(OrderCanceled(self.clock.now, order_id, reason))

    def on_cancel_rejected(self, order_id: str, reason: str) -> None:
        self.emit(OrderCancelRejected(self.clock.now, order_id, reason))

    def on_expired(self, order_id: str) -> None:
        self.emit(OrderExpired(self.clock.now, order_id))


def _on_fill(strategy: Strategy, fill: OrderFilled) -> None:
    strategy.on_fill(fill)
