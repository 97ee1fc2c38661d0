"""Orders and their state machine.

An order's status changes only by applying an event, through `TRANSITIONS`. Anything not in the
table raises `InvalidOrderTransition` naming the order, its status and the event.
"""
from __future__ import annotations

from decimal import Decimal

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
from qlcore.model.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from qlcore.model.money import ZERO

S = OrderStatus

# (status, event type) -> next status. A fill maps to PARTIALLY_FILLED; `Order.apply` promotes it to
# FILLED when nothing is left. A `None` target means "back to the status before the cancel request".
TRANSITIONS: dict[tuple[OrderStatus, type[Event]], OrderStatus | None] = {
    (S.INITIALIZED, OrderDenied): S.DENIED,
    (S.INITIALIZED, OrderSubmitted): S.SUBMITTED,
    (S.SUBMITTED, OrderAccepted): S.ACCEPTED,
    (S.SUBMITTED, OrderRejected): S.REJECTED,
    # the venue's fill can overtake its acknowledgement: real world possibility
    (S.SUBMITTED, OrderFilled): S.PARTIALLY_FILLED,
    # IOC/FOK orders may be cancelled by the venue before any acknowledgement
    (S.SUBMITTED, OrderCanceled): S.CANCELED,
    (S.SUBMITTED, OrderExpired): S.EXPIRED,
    (S.SUBMITTED, OrderCancelRequested): S.PENDING_CANCEL,
    (S.ACCEPTED, OrderFilled): S.PARTIALLY_FILLED,
    (S.ACCEPTED, OrderCancelRequested): S.PENDING_CANCEL,
    (S.ACCEPTED, OrderCanceled): S.CANCELED,
    (S.ACCEPTED, OrderExpired): S.EXPIRED,
    (S.PARTIALLY_FILLED, OrderFilled): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, OrderCancelRequested): S.PENDING_CANCEL,
    (S.PARTIALLY_FILLED, OrderCanceled): S.CANCELED,
    (S.PARTIALLY_FILLED, OrderExpired): S.EXPIRED,
    (S.PENDING_CANCEL, OrderCanceled): S.CANCELED,
    (S.PENDING_CANCEL, OrderCancelRejected): None,
    (S.PENDING_CANCEL, OrderExpired): S.EXPIRED,
    # a fill that raced the cancel request: the trade happened, so it counts; the cancel of the
    # rest is still pending (FILLED if nothing is left, and the venue then rejects the cancel)
    (S.PENDING_CANCEL, OrderFilled): S.PENDING_CANCEL,
    # the acknowledgement or rejection of the order itself can cross a cancel request sent
    # before it arrived: real world possibility
    (S.PENDING_CANCEL, OrderAccepted): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, OrderRejected): S.REJECTED,
    # "too late to cancel": the order completed while the cancel request was on its way
    (S.FILLED, OrderCancelRejected): S.FILLED,
    # late fills after the venue reported the order done: real world possibility. The fill is
    # applied (the position must be right); the order stays done unless it is now fully filled.
    (S.CANCELED, OrderFilled): S.CANCELED,
    (S.EXPIRED, OrderFilled): S.EXPIRED,
    # a second cancel request while one is pending changes nothing
    (S.PENDING_CANCEL, OrderCancelRequested): S.PENDING_CANCEL,
}


_WITH_REASON = frozenset({OrderDenied, OrderRejected, OrderCanceled, OrderCancelRejected})


class InvalidOrderTransition(ValueError):
    """An event that the order's current status does not allow."""

    def __init__(self, order_id: str, status: OrderStatus, event: Event, detail: str = "") -> None:
        self.order_id, self.status, self.event = order_id, status, event
        msg = f"order {order_id}: {type(event).__name__} is not allowed in status {status.value}"
        super().__init__(f"{msg} ({detail})" if detail else msg)


class Order:
    """The projection of one order's events. Build it from `OrderInitialized`; change it with `apply`."""

    __slots__ = (
        "_before_cancel",
        "fees",
        "filled_quantity",
        "notional_filled",
        "order_id",
        "order_type",
        "price",
        "quantity",
        "reason",
        "side",
        "status",
        "strategy_id",
        "symbol",
        "tags",
        "time_in_force",
        "trade_ids",
        "trigger_price",
        "ts_init",
        "ts_last",
        "venue_order_id",
    )

    def __init__(self, init: OrderInitialized) -> None:
        self.order_id = init.order_id
        self.strategy_id = init.strategy_id
        self.symbol = init.symbol
        self.side: OrderSide = init.side
        self.order_type: OrderType = init.order_type
        self.quantity: Decimal = init.quantity
        self.price = init.price
        self.trigger_price = init.trigger_price
        self.time_in_force: TimeInForce = init.time_in_force
        self.tags = init.tags
        self.status = OrderStatus.INITIALIZED
        self.filled_quantity = ZERO
        self.notional_filled = ZERO
        self.fees = ZERO
        self.trade_ids: set[str] = set()
        self.venue_order_id = ""
        self.reason = ""
        self.ts_init = self.ts_last = init.ts
        self._before_cancel: OrderStatus | None = None

    @property
    def leaves_quantity(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def avg_fill_price(self) -> Decimal | None:
        return self.notional_filled / self.filled_quantity if self.filled_quantity else None

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    def apply(self, event: Event) -> bool:
        """Apply one event. Return False when it is a fill already applied (same trade id)."""
        et = type(event)
        if et is OrderFilled:
            return self.fill(event)  # type: ignore[arg-type]
        try:
            target = TRANSITIONS[(self.status, et)]
        except KeyError:
            raise InvalidOrderTransition(self.order_id, self.status, event) from None
        if et is OrderAccepted:
            self.venue_order_id = event.venue_order_id  # type: ignore[attr-defined]
            if self.status is OrderStatus.PENDING_CANCEL:
                self._before_cancel = OrderStatus.ACCEPTED
        elif et is OrderCancelRequested:
            if self.status is not OrderStatus.PENDING_CANCEL:
                self._before_cancel = self.status
        elif et in _WITH_REASON:
            self.reason = event.reason  # type: ignore[attr-defined]
        if target is None:
            target = self._before_cancel or OrderStatus.ACCEPTED
        self.status = target
        self.ts_last = event.ts  # type: ignore[attr-defined]
        return True

    def fill(self, event: OrderFilled) -> bool:
        """Apply a fill (what `apply` does with an `OrderFilled`). Return False for a trade id already applied."""
        trade_id = event.trade_id
        trade_ids = self.trade_ids
        if trade_id in trade_ids:
            return False
        status = self.status
        try:
            target = TRANSITIONS[(status, OrderFilled)]
        except KeyError:
            raise InvalidOrderTransition(self.order_id, status, event) from None
        qty = event.quantity
        if qty <= ZERO:
            raise InvalidOrderTransition(self.order_id, status, event, "fill quantity <= 0")
        if qty > self.quantity - self.filled_quantity:
            raise InvalidOrderTransition(
                self.order_id, status, event, f"overfill: {qty} > leaves {self.leaves_quantity}"
            )
        trade_ids.add(trade_id)
        self.filled_quantity = filled = self.filled_quantity + qty
        self.notional_filled += qty * event.price
        self.fees += event.fee
        if status is OrderStatus.PENDING_CANCEL:
            self._before_cancel = OrderStatus.PARTIALLY_FILLED
        if filled == self.quantity:
            target = OrderStatus.FILLED
        self.status = target  # type: ignore[assignment]
        self.ts_last = event.ts
        return True

    def snapshot(self) -> tuple:
        """The values that define this order's state (used by the state hash)."""
        return (
            self.order_id,
            self.strategy_id,
            self.symbol,
            self.side,
            self.order_type,
            self.quantity,
            self.price,
            self.trigger_price,
            self.time_in_force,
            self.status,
            self.filled_quantity,
            self.notional_filled,
            self.fees,
            ",".join(sorted(self.trade_ids)),
        )

    def __repr__(self) -> str:
        px = f" @ {self.price}" if self.price is not None else ""
        return (
            f"Order({self.order_id} {self.side.value} {self.quantity} {self.symbol} "
            f"{self.order_type.value}{px} {self.status.value} filled={self.filled_quantity})"
        )
