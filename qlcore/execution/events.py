"""Events of the execution client: retries, status queries and timeouts.

They are facts for the audit trail; none of them changes an order's status by itself (the client
reports status changes to the kernel through the existing order events). They are not registered
with the codec or `TradingState` yet: see the execution client's module docstring.
"""
from __future__ import annotations

from dataclasses import dataclass

from qlcore.events.types import Event


@dataclass(frozen=True, slots=True)
class OrderSubmitRetried(Event):
    """Attempt `attempt` failed with a transient error; the next one follows after `delay_ns`."""

    ts: int
    order_id: str
    attempt: int
    error: str
    delay_ns: int


@dataclass(frozen=True, slots=True)
class OrderSubmitAmbiguous(Event):
    """Attempt `attempt` may have reached the venue: the order stays in flight and is never resent."""

    ts: int
    order_id: str
    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class OrderStatusQueried(Event):
    """The venue was asked about an order in flight; `venue_status` is its answer or "ERROR"."""

    ts: int
    order_id: str
    query: int
    venue_status: str
    venue_order_id: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OrderTimedOut(Event):
    """No definite venue status within the order timeout; the order is then reported expired."""

    ts: int
    order_id: str
    reason: str
    queries: int


@dataclass(frozen=True, slots=True)
class OrderCancelRetried(Event):
    ts: int
    order_id: str
    attempt: int
    error: str
    delay_ns: int


@dataclass(frozen=True, slots=True)
class LateVenueReport(Event):
    """A venue report the order can no longer take (after a timeout, or a second acknowledgement)."""

    ts: int
    order_id: str
    report: str
    detail: str = ""


EXECUTION_EVENTS: tuple[type[Event], ...] = (
    OrderSubmitRetried,
    OrderSubmitAmbiguous,
    OrderStatusQueried,
    OrderTimedOut,
    OrderCancelRetried,
    LateVenueReport,
)
