"""The execution client: between the kernel and a broker, it makes sending an order safe.

* The client order id is the order id the kernel made before sending (see `qlcore.execution.ids`);
  every attempt of one order carries the same id, so a venue sees at most one order per id.
* A transient error (`TransientBrokerError`: the order did not reach the venue) is retried with
  exponential backoff and full jitter; after `max_send_attempts` the order is rejected with a reason
  naming the last error.
* An ambiguous outcome (`AmbiguousOutcome`: the order may be at the venue) is never resent. The order
  stays in flight and `poll` settles it by asking the venue (`query`, with backoff): working or
  filled -> accepted (fills follow on the report stream), rejected, canceled or expired as the venue
  says, or, when the venue answers "unknown" at or after the order timeout, `OrderTimedOut` then
  expired (a failed query is no answer: the order stays in flight and is asked again).
* An order sent without error but not acknowledged within `ack_timeout_s` is settled the same way.

The client is a `Broker` to the kernel and an `ExecutionReports` to the broker. Status changes reach
the kernel as execution reports (so they become the existing order events through `Kernel.emit`);
retries, queries and timeouts are recorded through `record` as the events of
`qlcore.execution.events`. Send retries sleep (injected `sleep`); settling never sleeps: the engine
calls `poll` from its loop, and `next_due` says when something is due.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from decimal import Decimal

from qlcore.brokers.base import ExecutionReports
from qlcore.engine.clock import Clock
from qlcore.events.types import Event
from qlcore.execution.contract import (
    AmbiguousOutcome,
    QueryableBroker,
    TransientBrokerError,
    VenueOrderStatus,
    VenueStatus,
)
from qlcore.execution.events import (
    LateVenueReport,
    OrderCancelRetried,
    OrderStatusQueried,
    OrderSubmitAmbiguous,
    OrderSubmitRetried,
    OrderTimedOut,
)
from qlcore.execution.policy import ExecutionConfig
from qlcore.model.market import Bar
from qlcore.model.orders import Order

_NS = 1_000_000_000
_ACKNOWLEDGING = frozenset({VenueStatus.WORKING, VenueStatus.PARTIALLY_FILLED, VenueStatus.FILLED})


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _InFlight:
    """An order sent (or maybe sent) whose venue status the client does not know yet."""

    __slots__ = ("ambiguous", "deadline", "next_at", "order_id", "queries", "sent_at")

    def __init__(self, order_id: str, now: int) -> None:
        self.order_id = order_id
        self.sent_at = now
        self.deadline = now
        self.next_at = now
        self.queries = 0
        self.ambiguous = False


class ExecutionClient:
    """Sends orders to a broker with retries, settles ambiguous outcomes by query, times orders out."""

    def __init__(
        self,
        broker: QueryableBroker,
        *,
        clock: Clock,
        record: Callable[[Event], None],
        config: ExecutionConfig | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.config = config or ExecutionConfig()
        self._record = record
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._reports: ExecutionReports | None = None
        self._in_flight: dict[str, _InFlight] = {}
        # ids the kernel has seen acknowledged (a late second ack would break the order table) and
        # ids timed out (only their fills may still pass). Both grow with the session: see the report.
        self._acknowledged: set[str] = set()
        self._timed_out: set[str] = set()
        broker.bind(self)

    # --- the kernel's side: Broker --------------------------------------------------------------
    def bind(self, reports: ExecutionReports) -> None:
        self._reports = reports

    def submit(self, order: Order) -> None:
        """Send `order`, retrying transient errors; an ambiguous outcome leaves it in flight."""
        order_id = order.order_id
        cfg = self.config
        entry = _InFlight(order_id, self.clock.now)
        # in flight before the first attempt: a venue may acknowledge during the call itself
        self._in_flight[order_id] = entry
        last_error: TransientBrokerError | None = None
        for attempt in range(1, cfg.max_send_attempts + 1):
            try:
                self.broker.submit(order)
            except TransientBrokerError as exc:
                last_error = exc
                if order_id not in self._in_flight:
                    return  # a report settled it anyway: the venue's word wins
                if attempt == cfg.max_send_attempts:
                    break
                delay = cfg.send_backoff.draw(attempt - 1, self._rng)
                self._record(
                    OrderSubmitRetried(self.clock.now, order_id, attempt, _describe(exc), round(delay * _NS))
                )
                self._sleep(delay)
            except AmbiguousOutcome as exc:
                self._start_settling(entry, attempt, _describe(exc))
                return
            except BaseException as exc:
                # unknown failure: the order may be out there, so treat it as ambiguous, then raise
                self._start_settling(entry, attempt, _describe(exc))
                raise
            else:
                if order_id in self._in_flight:
                    self._wait_for_ack(entry)
                return
        del self._in_flight[order_id]
        assert last_error is not None
        why = f"not sent after {cfg.max_send_attempts} attempts; last error: {_describe(last_error)}"
        self._kernel.on_rejected(order_id, why)

    def cancel(self, order_id: str) -> None:
        """Ask the venue to cancel, retrying transient errors; give up with a cancel rejection."""
        cfg = self.config
        last_error: TransientBrokerError | None = None
        for attempt in range(1, cfg.max_send_attempts + 1):
            try:
                self.broker.cancel(order_id)
                return
            except TransientBrokerError as exc:
                last_error = exc
                if attempt == cfg.max_send_attempts:
                    break
                delay = cfg.send_backoff.draw(attempt - 1, self._rng)
                self._record(
                    OrderCancelRetried(self.clock.now, order_id, attempt, _describe(exc), round(delay * _NS))
                )
                self._sleep(delay)
        assert last_error is not None
        why = f"cancel not sent after {cfg.max_send_attempts} attempts; last error: {_describe(last_error)}"
        self._kernel.on_cancel_rejected(order_id, why)

    def on_bar(self, bar: Bar) -> None:
        self.broker.on_bar(bar)

    # --- timers ---------------------------------------------------------------------------------
    @property
    def in_flight(self) -> frozenset[str]:
        """Ids of orders whose venue status is not known yet."""
        return frozenset(self._in_flight)

    def next_due(self) -> int | None:
        """The clock time (ns) of the next status query or timeout, None when nothing is in flight."""
        return min((e.next_at for e in self._in_flight.values()), default=None)

    def poll(self) -> None:
        """Query the venue about every in-flight order that is due; time out those past the deadline."""
        now = self.clock.now
        due = [e for e in self._in_flight.values() if e.next_at <= now]
        for entry in due:
            if entry.order_id in self._in_flight:  # a report during this poll may have settled it
                self._ask(entry, now)

    # --- the broker's side: ExecutionReports ----------------------------------------------------
    def on_accepted(self, order_id: str, venue_order_id: str) -> None:
        if order_id in self._timed_out:
            self._late(order_id, "accepted", f"venue order {venue_order_id}; cancel sent")
            self._cancel_ghost(order_id)
            return
        if order_id in self._acknowledged:
            self._late(order_id, "accepted", f"second acknowledgement (venue order {venue_order_id})")
            return
        self._in_flight.pop(order_id, None)
        self._acknowledged.add(order_id)
        self._kernel.on_accepted(order_id, venue_order_id)

    def on_rejected(self, order_id: str, reason: str) -> None:
        if order_id in self._timed_out:
            self._late(order_id, "rejected", reason)
            return
        self._in_flight.pop(order_id, None)
        self._kernel.on_rejected(order_id, reason)

    def on_filled(self, order_id: str, trade_id: str, quantity: Decimal, price: Decimal, fee: Decimal) -> None:
        # a fill is the venue's proof that it has the order: it settles it, and a timed-out order
        # still takes it (EXPIRED + fill is in the order table: the position must be right)
        self._in_flight.pop(order_id, None)
        self._acknowledged.add(order_id)
        self._kernel.on_filled(order_id, trade_id, quantity, price, fee)

    def on_canceled(self, order_id: str, reason: str) -> None:
        if order_id in self._timed_out:
            self._late(order_id, "canceled", reason)
            return
        self._in_flight.pop(order_id, None)
        self._kernel.on_canceled(order_id, reason)

    def on_cancel_rejected(self, order_id: str, reason: str) -> None:
        if order_id in self._timed_out:
            self._late(order_id, "cancel rejected", reason)
            return
        self._kernel.on_cancel_rejected(order_id, reason)

    def on_expired(self, order_id: str) -> None:
        if order_id in self._timed_out:
            self._late(order_id, "expired")
            return
        self._in_flight.pop(order_id, None)
        self._kernel.on_expired(order_id)

    # --- internals ------------------------------------------------------------------------------
    @property
    def _kernel(self) -> ExecutionReports:
        reports = self._reports
        if reports is None:
            raise RuntimeError("execution client is not bound to an engine")
        return reports

    def _wait_for_ack(self, entry: _InFlight) -> None:
        now = self.clock.now
        entry.sent_at = now
        entry.deadline = now + round(self.config.order_timeout_s * _NS)
        entry.next_at = now + round(self.config.ack_timeout_s * _NS)

    def _start_settling(self, entry: _InFlight, attempt: int, error: str) -> None:
        if entry.order_id not in self._in_flight:
            return
        now = self.clock.now
        entry.ambiguous = True
        entry.sent_at = now
        entry.deadline = now + round(self.config.order_timeout_s * _NS)
        entry.next_at = now + round(self.config.query_backoff.draw(0, self._rng) * _NS)
        self._record(OrderSubmitAmbiguous(now, entry.order_id, attempt, error))

    def _ask(self, entry: _InFlight, now: int) -> None:
        order_id = entry.order_id
        entry.queries += 1
        status: VenueOrderStatus | None
        try:
            status = self.broker.query(order_id)
        except TransientBrokerError as exc:
            status = None
            self._record(OrderStatusQueried(now, order_id, entry.queries, "ERROR", "", _describe(exc)))
        else:
            self._record(
                OrderStatusQueried(
                    now, order_id, entry.queries, status.status.value, status.venue_order_id, status.reason
                )
            )
        if order_id not in self._in_flight:
            return
        if status is not None and status.status is not VenueStatus.UNKNOWN:
            self._settle(order_id, status)
        elif status is not None and now >= entry.deadline:
            # only an answer counts: a failed query says nothing, so a venue that cannot be asked
            # keeps the order in flight (and queried) until it can
            self._time_out(entry, now)
        else:
            next_at = now + round(self.config.query_backoff.draw(entry.queries, self._rng) * _NS)
            entry.next_at = min(next_at, entry.deadline) if now < entry.deadline else next_at

    def _settle(self, order_id: str, status: VenueOrderStatus) -> None:
        s = status.status
        if s in _ACKNOWLEDGING:
            self.on_accepted(order_id, status.venue_order_id)
        elif s is VenueStatus.REJECTED:
            self.on_rejected(order_id, status.reason or "rejected by the venue (status query)")
        elif s is VenueStatus.CANCELED:
            self.on_canceled(order_id, status.reason or "canceled by the venue (status query)")
        elif s is VenueStatus.EXPIRED:
            self.on_expired(order_id)
        else:  # pragma: no cover - every VenueStatus is handled above
            raise ValueError(f"order {order_id}: unexpected venue status {s}")

    def _time_out(self, entry: _InFlight, now: int) -> None:
        order_id = entry.order_id
        del self._in_flight[order_id]
        self._timed_out.add(order_id)
        how = "after an ambiguous send" if entry.ambiguous else "with no acknowledgement"
        reason = (
            f"order timeout: venue status still unknown {self.config.order_timeout_s}s after sending "
            f"{how} ({entry.queries} status queries)"
        )
        self._record(OrderTimedOut(now, order_id, reason, entry.queries))
        self._kernel.on_expired(order_id)

    def _late(self, order_id: str, report: str, detail: str = "") -> None:
        self._record(LateVenueReport(self.clock.now, order_id, report, detail))

    def _cancel_ghost(self, order_id: str) -> None:
        # the venue has an order the engine already gave up on: take it off the book, best effort
        try:
            self.broker.cancel(order_id)
        except (TransientBrokerError, AmbiguousOutcome) as exc:
            self._late(order_id, "ghost cancel failed", _describe(exc))
