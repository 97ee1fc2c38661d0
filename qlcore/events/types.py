"""Event types: frozen facts. Every state change of the engine is one of these.

Each event carries `ts` (integer nanoseconds of the engine clock when it happened). Once stored it
also has a sequence number in its stream; that lives in the store's row, not in the event.
Order events carry the ids that tie them to their strategy, so an audit can follow them without joins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from qlcore.model.enums import OrderSide, OrderType, TimeInForce


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    ts: int
    run_id: str
    mode: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class AccountFunded(Event):
    ts: int
    account_id: str
    amount: Decimal
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class OrderInitialized(Event):
    ts: int
    order_id: str
    strategy_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    tags: str = ""


@dataclass(frozen=True, slots=True)
class OrderDenied(Event):
    """Refused before leaving the engine (validation or risk). `reason` names the rule, limit and value."""

    ts: int
    order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class OrderSubmitted(Event):
    ts: int
    order_id: str


@dataclass(frozen=True, slots=True)
class OrderAccepted(Event):
    ts: int
    order_id: str
    venue_order_id: str


@dataclass(frozen=True, slots=True)
class OrderRejected(Event):
    ts: int
    order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class OrderFilled(Event):
    ts: int
    order_id: str
    trade_id: str
    strategy_id: str
    symbol: str
    side: OrderSide
    quantity: Decimal
    price: Decimal
    fee: Decimal


@dataclass(frozen=True, slots=True)
class OrderCancelRequested(Event):
    ts: int
    order_id: str


@dataclass(frozen=True, slots=True)
class OrderCancelRejected(Event):
    ts: int
    order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class OrderCanceled(Event):
    ts: int
    order_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OrderExpired(Event):
    ts: int
    order_id: str


@dataclass(frozen=True, slots=True)
class MarksUpdated(Event):
    """Mark prices used for unrealized P&L; `marks` is a tuple of (symbol, price) pairs."""

    ts: int
    marks: tuple[tuple[str, Decimal], ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    ts: int
    run_id: str
    state_hash: str


ORDER_EVENTS: tuple[type[Event], ...] = (
    OrderInitialized,
    OrderDenied,
    OrderSubmitted,
    OrderAccepted,
    OrderRejected,
    OrderFilled,
    OrderCancelRequested,
    OrderCancelRejected,
    OrderCanceled,
    OrderExpired,
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (RunStarted, AccountFunded, MarksUpdated, RunFinished, *ORDER_EVENTS)
}


# registered types that record a fact and leave trading state as it is: `TradingState` skips them
UNFOLDED: set[type[Event]] = set()


def register(cls: type[Event], *, folded: bool = True) -> type[Event]:
    """Make an event type known to the codec (used by later packages that add their own events).

    `folded=False` marks a fact that does not change trading state (`TradingState` passes over it).
    """
    existing = EVENT_TYPES.get(cls.__name__)
    if existing is not None and existing is not cls:
        raise ValueError(f"event type name {cls.__name__!r} is already registered")
    EVENT_TYPES[cls.__name__] = cls
    if not folded:
        UNFOLDED.add(cls)
    return cls


# --- risk ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RiskLimitsChanged(Event):
    """Pre-trade limits replaced while running. `config` is the canonical JSON of the whole new
    `RiskConfig` (not a diff), so the limits in force are the last such event of a stream."""

    ts: int
    actor: str
    config: str
    reason: str = ""


register(RiskLimitsChanged)

# facts of the other subsystems, registered on import so that every stream decodes
import qlcore.events.facts  # noqa: E402,F401
