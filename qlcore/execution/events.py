"""Events of the execution client: retries, status queries and timeouts.

They are facts for the audit trail; none of them changes an order's status by itself (the client
reports status changes to the kernel through the existing order events). They live in
`qlcore.events.facts`, registered with the codec and passed over by `TradingState`.
"""
from __future__ import annotations

from qlcore.events.facts import (
    EXECUTION_EVENTS,
    LateVenueReport,
    OrderCancelRetried,
    OrderStatusQueried,
    OrderSubmitAmbiguous,
    OrderSubmitRetried,
    OrderTimedOut,
)

__all__ = [
    "EXECUTION_EVENTS",
    "LateVenueReport",
    "OrderCancelRetried",
    "OrderStatusQueried",
    "OrderSubmitAmbiguous",
    "OrderSubmitRetried",
    "OrderTimedOut",
]
