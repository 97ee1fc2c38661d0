"""A broker wrapper that injects venue and network faults, for tests and paper mode.

`FaultyBroker` wraps any `Broker` (usually the `SimulatedBroker`) and, per submit call, injects a
`Fault` drawn with seeded probabilities (`FaultRates`) or taken from a script:

* TRANSIENT, DISCONNECT: the request fails before the venue sees it (`TransientBrokerError`).
* TIMEOUT_AFTER_ACCEPT: the venue accepts the order, the response times out (`AmbiguousOutcome`).
* LOST_ACK: the venue accepts the order, the call returns, the acknowledgement never arrives.
* TIMEOUT_BEFORE_VENUE: the request times out (`AmbiguousOutcome`) and never reached the venue.
* REJECT: the venue rejects the order.

It keeps the venue's own record by client order id: how many orders it received per id
(`received`), how many submit calls were made (`submit_calls`), the faults injected (`faults`), and
each order's status, which `query` answers. A second order with an id the venue already has is
rejected as a duplicate, as real venues do, and still counted.
"""
from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, fields
from decimal import Decimal
from enum import StrEnum

from qlcore.brokers.base import Broker, ExecutionReports
from qlcore.execution.contract import (
    AmbiguousOutcome,
    BrokerDisconnected,
    TransientBrokerError,
    VenueOrderStatus,
    VenueStatus,
)
from qlcore.model.market import Bar
from qlcore.model.money import ZERO
from qlcore.model.orders import Order


class Fault(StrEnum):
    NONE = "NONE"
    TRANSIENT = "TRANSIENT"
    DISCONNECT = "DISCONNECT"
    TIMEOUT_AFTER_ACCEPT = "TIMEOUT_AFTER_ACCEPT"
    LOST_ACK = "LOST_ACK"
    TIMEOUT_BEFORE_VENUE = "TIMEOUT_BEFORE_VENUE"
    REJECT = "REJECT"

    @property
    def reaches_venue(self) -> bool:
        return self in _REACHES_VENUE


_REACHES_VENUE = frozenset({Fault.NONE, Fault.TIMEOUT_AFTER_ACCEPT, Fault.LOST_ACK, Fault.REJECT})
_SUBMIT_FAULTS = (
    Fault.TRANSIENT,
    Fault.DISCONNECT,
    Fault.TIMEOUT_AFTER_ACCEPT,
    Fault.LOST_ACK,
    Fault.TIMEOUT_BEFORE_VENUE,
    Fault.REJECT,
)


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probabilities per call. The submit faults are exclusive (their sum is at most 1)."""

    transient: float = 0.0
    disconnect: float = 0.0
    timeout_after_accept: float = 0.0
    lost_ack: float = 0.0
    timeout_before_venue: float = 0.0
    reject: float = 0.0
    query_error: float = 0.0  # a status query fails with a transient error
    duplicate_fill: float = 0.0  # the venue delivers a fill report twice

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name}: a probability in [0, 1], got {value}")
        total = sum(self._submit_weights())
        if total > 1.0:
            raise ValueError(f"submit fault rates add up to {total}, more than 1")

    def _submit_weights(self) -> tuple[float, ...]:
        return (
            self.transient,
            self.disconnect,
            self.timeout_after_accept,
            self.lost_ack,
            self.timeout_before_venue,
            self.reject,
        )


class _VenueOrder:
    __slots__ = ("filled", "quantity", "reason", "status", "venue_order_id")

    def __init__(self, quantity: Decimal) -> None:
        self.quantity = quantity
        self.filled = ZERO
        self.status = VenueStatus.WORKING
        self.venue_order_id = ""
        self.reason = ""


class FaultyBroker:
    """Wraps a broker; injects faults on submit and query; keeps the venue's record per client order id."""

    def __init__(
        self,
        inner: Broker,
        rates: FaultRates | None = None,
        *,
        seed: int = 0,
        script: Iterable[Fault] = (),
    ) -> None:
        self.inner = inner
        self.rates = rates or FaultRates()
        self._rng = random.Random(seed)
        self._script = deque(script)
        self._reports: ExecutionReports | None = None
        self._orders: dict[str, _VenueOrder] = {}
        self._mute_ack: set[str] = set()
        self.received: Counter[str] = Counter()
        self.submit_calls: Counter[str] = Counter()
        self.queries: Counter[str] = Counter()
        self.faults: dict[str, list[Fault]] = {}
        inner.bind(self)

    def script(self, *faults: Fault) -> None:
        """Queue faults for the next submit calls, before any drawn by rate."""
        self._script.extend(faults)

    # --- Broker -----------------------------------------------------------------------------------
    def bind(self, reports: ExecutionReports) -> None:
        self._reports = reports

    def submit(self, order: Order) -> None:
        coid = order.order_id
        self.submit_calls[coid] += 1
        fault = self._draw()
        self.faults.setdefault(coid, []).append(fault)
        if fault is Fault.TRANSIENT:
            raise TransientBrokerError(f"HTTP 503 Service Unavailable (submit {coid})")
        if fault is Fault.DISCONNECT:
            raise BrokerDisconnected(f"connection reset before the request was sent (submit {coid})")
        if fault is Fault.TIMEOUT_BEFORE_VENUE:
            raise AmbiguousOutcome(f"no response within the request timeout (submit {coid})")
        self.received[coid] += 1
        if coid in self._orders:
            self._report.on_rejected(coid, f"duplicate client order id {coid}")
            return
        record = self._orders[coid] = _VenueOrder(order.quantity)
        if fault is Fault.REJECT:
            record.status = VenueStatus.REJECTED
            record.reason = "venue rejected the order: insufficient buying power (injected)"
            self._report.on_rejected(coid, record.reason)
            return
        if fault is Fault.TIMEOUT_AFTER_ACCEPT or fault is Fault.LOST_ACK:
            self._mute_ack.add(coid)  # this order's acknowledgement is lost on the way back
        self.inner.submit(order)
        if fault is Fault.TIMEOUT_AFTER_ACCEPT:
            raise AmbiguousOutcome(f"response timed out after the venue accepted the order (submit {coid})")

    def cancel(self, order_id: str) -> None:
        self.inner.cancel(order_id)

    def on_bar(self, bar: Bar) -> None:
        self.inner.on_bar(bar)

    def query(self, client_order_id: str) -> VenueOrderStatus:
        """What the venue knows about `client_order_id` (UNKNOWN if it never received it)."""
        self.queries[client_order_id] += 1
        if self.rates.query_error and self._rng.random() < self.rates.query_error:
            raise TransientBrokerError(f"HTTP 502 Bad Gateway (status query {client_order_id})")
        record = self._orders.get(client_order_id)
        if record is None:
            return VenueOrderStatus(client_order_id, VenueStatus.UNKNOWN)
        return VenueOrderStatus(client_order_id, record.status, record.venue_order_id, record.reason)

    # --- the inner broker's reports ---------------------------------------------------------------
    def on_accepted(self, order_id: str, venue_order_id: str) -> None:
        record = self._orders[order_id]
        record.venue_order_id = venue_order_id
        if order_id in self._mute_ack:
            self._mute_ack.discard(order_id)
            return
        self._report.on_accepted(order_id, venue_order_id)

    def on_rejected(self, order_id: str, reason: str) -> None:
        record = self._orders[order_id]
        record.status, record.reason = VenueStatus.REJECTED, reason
        self._report.on_rejected(order_id, reason)

    def on_filled(self, order_id: str, trade_id: str, quantity: Decimal, price: Decimal, fee: Decimal) -> None:
        record = self._orders[order_id]
        record.filled += quantity
        if record.status is VenueStatus.WORKING or record.status is VenueStatus.PARTIALLY_FILLED:
            full = record.filled >= record.quantity
            record.status = VenueStatus.FILLED if full else VenueStatus.PARTIALLY_FILLED
        self._report.on_filled(order_id, trade_id, quantity, price, fee)
        if self.rates.duplicate_fill and self._rng.random() < self.rates.duplicate_fill:
            self._report.on_filled(order_id, trade_id, quantity, price, fee)

    def on_canceled(self, order_id: str, reason: str) -> None:
        record = self._orders[order_id]
        record.status, record.reason = VenueStatus.CANCELED, reason
        self._report.on_canceled(order_id, reason)

    def on_cancel_rejected(self, order_id: str, reason: str) -> None:
        self._report.on_cancel_rejected(order_id, reason)

    def on_expired(self, order_id: str) -> None:
        self._orders[order_id].status = VenueStatus.EXPIRED
        self._report.on_expired(order_id)

    # --- internals --------------------------------------------------------------------------------
    @property
    def _report(self) -> ExecutionReports:
        if self._reports is None:
            raise RuntimeError("faulty broker is not bound to an engine")
        return self._reports

    def _draw(self) -> Fault:
        if self._script:
            return self._script.popleft()
        x = self._rng.random()
        for fault, weight in zip(_SUBMIT_FAULTS, self.rates._submit_weights(), strict=True):
            if x < weight:
                return fault
            x -= weight
        return Fault.NONE
