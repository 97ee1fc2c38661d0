"""The paper venue: a simulated broker with its own durable ledger, so it survives the engine's crash.

`PaperVenue` matches orders with the simulated broker's rules (`qlcore.brokers.matching`), plus what a
real venue adds: fills limited to a share of each bar's volume (the rest keeps working), a latency
before an order is acknowledged, injected rejects, and refusal of a second order with a known client
order id.

The durability contract: `submit`, `cancel`, `on_bar` and `advance_to` change the venue's state in
memory and queue execution reports; `flush` writes every change since the last flush in ONE
transaction, commits, and only then delivers the queued reports, in order. So a report the engine saw
is always in the ledger, and a crash before the commit loses a change and its report together, as if
the message never arrived. The queries (`query`, `open_orders`, `fills`, `positions`, `history`,
`order_count`) answer from the ledger, i.e. what the venue has committed; `working_count` and
`duplicate_submits` are the live values.

After a restart the engine reconciles with `query`/`history`, or lets `replay_reports` deliver what it
missed (acknowledgements, fills, cancels, expiries, rejects) for the orders it knows.

Latency model: an order sent when the venue's clock (the latest bar time, or `advance_to`) reads T
is in transit until T + latency; then the venue acknowledges (or rejects) it and it can match. A status
query answers UNKNOWN while it is in transit. A cancel is not delayed: it catches an order in transit.
"""
from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from qlcore.brokers.base import ExecutionReports
from qlcore.brokers.matching import (
    FillModel,
    Pricing,
    WorkingOrder,
    expired_before,
    match,
    one_bar_only,
    too_early,
)
from qlcore.brokers.paper_ledger import ORDER_COLUMNS, SCHEMA_VERSION, PaperLedger
from qlcore.execution.contract import AmbiguousOutcome, VenueOrderStatus, VenueStatus
from qlcore.model.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from qlcore.model.instruments import Instrument
from qlcore.model.market import Bar
from qlcore.model.money import ONE, ZERO, to_decimal
from qlcore.model.orders import Order

_IN_TRANSIT = "IN_TRANSIT"  # ledger status of an order sent but not yet acknowledged (query: UNKNOWN)
_LIVE = (_IN_TRANSIT, VenueStatus.WORKING.value, VenueStatus.PARTIALLY_FILLED.value)
_WORKING = frozenset({VenueStatus.WORKING.value, VenueStatus.PARTIALLY_FILLED.value})
_NS_PER_MS = 1_000_000
_COID, _VENUE_ORDER_ID, _STATUS, _REASON = (
    ORDER_COLUMNS.index(c) for c in ("client_order_id", "venue_order_id", "status", "reason")
)


class DuplicateClientOrderId(AmbiguousOutcome):
    """The venue already holds an order with this client order id: ask it (`query`), never resend.

    It derives from `AmbiguousOutcome` because the safe reaction is the same: the order is at the
    venue, so the execution client settles it by a status query instead of sending it again.
    """

    def __init__(self, client_order_id: str, status: str) -> None:
        super().__init__(
            f"duplicate client order id {client_order_id}: the venue already holds that order "
            f"(status {status}); refused, no second order"
        )
        self.client_order_id = client_order_id
        self.status = status


@dataclass(frozen=True, slots=True)
class VenueFill:
    """One trade at the venue, as its ledger records it."""

    client_order_id: str
    trade_id: str
    symbol: str
    side: OrderSide
    quantity: Decimal
    price: Decimal
    fee: Decimal
    ts: int


@dataclass(frozen=True, slots=True)
class VenueOrderRecord:
    """The venue's record of one order: what reconciliation compares with the engine's order."""

    client_order_id: str
    venue_order_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    quantity: Decimal
    filled_quantity: Decimal
    status: VenueStatus  # UNKNOWN while the order is in transit
    acknowledged: bool
    in_transit: bool  # received, acknowledged once the venue's clock passes `ack_ts`
    ack_ts: int
    reason: str
    fills: tuple[VenueFill, ...]

    @property
    def is_open(self) -> bool:
        return self.status is VenueStatus.WORKING or self.status is VenueStatus.PARTIALLY_FILLED


class _VenueOrder(WorkingOrder):
    __slots__ = (
        "ack_ts",
        "acknowledged",
        "fees",
        "filled",
        "price",
        "quantity",
        "reason",
        "seq",
        "side",
        "status",
        "symbol",
        "trigger_price",
        "venue_order_id",
    )

    def __init__(
        self,
        order_id: str,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        quantity: Decimal,
        price: Decimal | None,
        trigger_price: Decimal | None,
        time_in_force: TimeInForce,
        created: int,
    ) -> None:
        super().__init__(order_id, side, order_type, quantity, price, trigger_price, time_in_force, created)
        self.symbol = symbol
        self.side = side
        self.quantity = quantity
        self.price = price
        self.trigger_price = trigger_price
        self.seq = 0
        self.venue_order_id = ""
        self.ack_ts = 0
        self.acknowledged = False
        self.status = _IN_TRANSIT
        self.filled = ZERO
        self.fees = ZERO
        self.reason = ""

    def row(self) -> tuple[Any, ...]:
        return (
            self.order_id,
            self.seq,
            self.venue_order_id,
            self.symbol,
            self.side.value,
            self.type.value,
            str(self.quantity),
            None if self.price is None else str(self.price),
            None if self.trigger_price is None else str(self.trigger_price),
            self.tif.value,
            self.created,  # the ledger's submitted_ts
            self.ack_ts,
            int(self.acknowledged),
            self.status,
            str(self.filled),
            str(self.fees),
            self.fills,
            self.reason,
            self.day,
            int(self.triggered),
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> _VenueOrder:
        (coid, seq, venue_order_id, symbol, side, order_type, quantity, price, trigger, tif,
         submitted_ts, ack_ts, acknowledged, status, filled, fees, fills, reason, day, triggered) = row  # fmt: skip
        rec = cls(
            coid,
            symbol,
            OrderSide(side),
            OrderType(order_type),
            Decimal(quantity),
            None if price is None else Decimal(price),
            None if trigger is None else Decimal(trigger),
            TimeInForce(tif),
            submitted_ts,
        )
        rec.seq, rec.venue_order_id = seq, venue_order_id
        rec.ack_ts, rec.acknowledged = ack_ts, bool(acknowledged)
        rec.status, rec.reason = status, reason
        rec.filled, rec.fees, rec.fills = Decimal(filled), Decimal(fees), fills
        rec.leaves = rec.quantity - rec.filled
        rec.day, rec.triggered = day, bool(triggered)
        return rec


def _fill_from_row(row: tuple[Any, ...]) -> VenueFill:
    _, trade_id, coid, symbol, side, quantity, price, fee, ts = row
    return VenueFill(coid, trade_id, symbol, OrderSide(side), Decimal(quantity), Decimal(price), Decimal(fee), ts)


class PaperVenue:
    """A simulated venue with a durable SQLite ledger; a `Broker` and a `QueryableBroker`.

    Parameters
    ----------
    path: the ledger file; reopening it restores the working orders, which keep matching.
    fill_model: fees and slippage, as for the `SimulatedBroker`.
    latency_ms: time from sending an order to its acknowledgement, on the venue's clock.
    participation: the share of a bar's volume that can fill (all working orders of the symbol
        together), rounded down to the instrument's lot (whole units without an instrument).
    reject_symbols, reject_rate, seed: injected rejects, for every order of those symbols and, with
        probability `reject_rate`, for others (drawn from the seed and the client order id, so a
        reopened venue decides the same way).
    venue: the prefix of venue order ids and trade ids; a ledger keeps the name it was created with.
    instruments: lot sizes per symbol for the volume limit.
    fill_on_arrival: a marketable order trades when it arrives, at the last bar's close (as a paper
        account of a broker fills against the current quote), instead of at the next bar's open
        (the backtest convention, the default). The volume limit is that of the last bar. The
        price is one known when the order was made; it is the only fill not on a later bar.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fill_model: FillModel | None = None,
        latency_ms: float = 0.0,
        participation: float = 1.0,
        reject_symbols: frozenset[str] = frozenset(),
        reject_rate: float = 0.0,
        seed: int = 0,
        venue: str = "PAPER",
        instruments: Mapping[str, Instrument] | None = None,
        fill_on_arrival: bool = False,
    ) -> None:
        if not latency_ms >= 0 or latency_ms == float("inf"):
            raise ValueError(f"latency_ms must be a finite number >= 0, got {latency_ms}")
        if not 0 < participation <= 1:
            raise ValueError(f"participation must be in (0, 1] (a share of bar volume), got {participation}")
        if not 0 <= reject_rate <= 1:
            raise ValueError(f"reject_rate must be a probability in [0, 1], got {reject_rate}")
        if not venue:
            raise ValueError("venue name must not be empty")
        self.fill_model = fill_model or FillModel()
        self.fill_on_arrival = fill_on_arrival
        self._last_bar: dict[str, Bar] = {}
        self.venue = venue
        self.latency_ns = round(latency_ms * _NS_PER_MS)
        self.participation = to_decimal(participation)
        self.reject_symbols = frozenset(reject_symbols)
        self.reject_rate = reject_rate
        self.seed = seed
        self._lots = {s: i.lot_size for s, i in (instruments or {}).items()}
        self._pricing = Pricing(self.fill_model)
        self._reports: ExecutionReports | None = None
        self._queue: deque[tuple[str, tuple[Any, ...]]] = deque()
        self._dirty: dict[str, _VenueOrder] = {}
        self._new_fills: list[tuple[Any, ...]] = []
        self._meta_dirty = False
        # orders the venue still acts on, or changed since the last flush, by client order id
        self._orders: dict[str, _VenueOrder] = {}
        self._working: dict[str, list[_VenueOrder]] = {}
        self._in_transit: deque[_VenueOrder] = deque()

        self._ledger = PaperLedger(path)
        self.path = self._ledger.path
        meta = self._ledger.meta()
        stored_venue = meta.get("venue")
        if stored_venue is not None and stored_venue != venue:
            self._ledger.close()
            raise ValueError(f"ledger {self.path} belongs to venue {stored_venue!r}, not {venue!r}")
        if not meta:
            self._ledger.commit([], [], {"venue": venue, "schema_version": SCHEMA_VERSION, "clock": "0"})
        self.clock = int(meta.get("clock", "0"))
        self.duplicate_submits = int(meta.get("duplicate_submits", "0"))
        self._order_seq = self._ledger.last_order_seq()
        self._fill_seq = self._ledger.last_fill_seq()
        stored_schema = meta.get("schema_version", SCHEMA_VERSION)
        if stored_schema != SCHEMA_VERSION:
            self._ledger.close()
            raise ValueError(f"ledger {self.path} has schema version {stored_schema}, this venue reads {SCHEMA_VERSION}")
        in_transit = []
        for row in self._ledger.orders_with_status(_LIVE):
            rec = _VenueOrder.from_row(row)
            self._orders[rec.order_id] = rec
            if rec.status == _IN_TRANSIT:
                in_transit.append(rec)
            else:
                self._working.setdefault(rec.symbol, []).append(rec)
        # arrival order (a ledger written with another latency setting may hold them out of send order)
        self._in_transit.extend(sorted(in_transit, key=lambda r: (r.ack_ts, r.seq)))

    # --- Broker -----------------------------------------------------------------------------------
    def bind(self, reports: ExecutionReports) -> None:
        self._reports = reports

    @property
    def working_count(self) -> int:
        """Orders acknowledged and still working (live value, flushed or not)."""
        return sum(len(w) for w in self._working.values())

    def submit(self, order: Order) -> None:
        """Receive an order; a client order id the venue already holds raises `DuplicateClientOrderId`."""
        coid = order.order_id
        known = self._orders.get(coid)
        status = known.status if known is not None else self._stored_status(coid)
        if status is not None:
            self.duplicate_submits += 1
            self._meta_dirty = True
            raise DuplicateClientOrderId(coid, VenueStatus.UNKNOWN.value if status == _IN_TRANSIT else status)
        if order.leaves_quantity <= 0:
            raise ValueError(f"order {coid}: nothing to fill (quantity {order.quantity}, leaves {order.leaves_quantity})")
        rec = _VenueOrder(
            coid,
            order.symbol,
            order.side,
            order.order_type,
            order.leaves_quantity,
            order.price,
            order.trigger_price,
            order.time_in_force,
            # it meets only bars after this: neither one before the order was made, nor one the
            # venue has already seen
            max(order.ts_init, self.clock),
        )
        self._order_seq += 1
        rec.seq = self._order_seq
        rec.venue_order_id = f"{self.venue}-{self._order_seq}"
        rec.ack_ts = self.clock + self.latency_ns
        self._orders[coid] = rec
        self._dirty[coid] = rec
        if rec.ack_ts <= self.clock:
            self._arrive(rec)
        else:
            self._in_transit.append(rec)

    def cancel(self, order_id: str) -> None:
        """Cancel a working (or in-transit) order; anything else gets a cancel rejection."""
        rec = self._orders.get(order_id)
        status = rec.status if rec is not None else self._stored_status(order_id)
        if rec is None or status not in _LIVE:
            why = "no order with this client order id" if status is None else f"the order is {status}"
            self._report("on_cancel_rejected", order_id, f"order is not working at the venue: {why}")
            return
        if rec.status == _IN_TRANSIT:
            self._in_transit.remove(rec)
        else:
            self._working[rec.symbol].remove(rec)
        self._finish(rec, VenueStatus.CANCELED, "canceled by request")
        self._report("on_canceled", order_id, rec.reason)

    def on_bar(self, bar: Bar) -> None:
        """Move the clock to the bar, acknowledge arrived orders, match the symbol's working orders."""
        self.advance_to(bar.ts)
        if self.fill_on_arrival:
            self._last_bar[bar.symbol] = bar
        working = self._working.get(bar.symbol)
        if not working:
            return
        self._match(bar, working)

    def _match(self, bar: Bar, working: list[_VenueOrder], *, on_arrival: bool = False) -> None:
        available = self._capacity(bar)
        finished = False
        for rec in working:
            if not on_arrival and too_early(rec, bar):
                continue
            first = rec.day is None
            if expired_before(rec, bar):
                finished = True
                self._finish(rec, VenueStatus.EXPIRED, "DAY order: a bar of a later day arrived")
                self._report("on_expired", rec.order_id)
                continue
            was_triggered = rec.triggered
            price, market_like = match(rec, bar)
            if first or rec.triggered is not was_triggered:
                self._dirty[rec.order_id] = rec
            quantity = ZERO
            if price is not None:
                quantity = min(rec.leaves, available)
                if rec.tif is TimeInForce.FOK and quantity < rec.leaves:
                    quantity = ZERO  # all or nothing
                if quantity:
                    available -= quantity
                    self._fill(rec, price, market_like, quantity, bar.ts)
            if not rec.leaves:
                finished = True
            elif one_bar_only(rec):
                finished = True
                why = "not filled" if not quantity else f"{rec.leaves} of {rec.quantity} not filled"
                self._finish(rec, VenueStatus.CANCELED, f"{rec.tif.value}: {why} on the first bar")
                self._report("on_canceled", rec.order_id, rec.reason)
        if finished:
            working[:] = [rec for rec in working if rec.status in _WORKING]

    def advance_to(self, ts: int) -> None:
        """Move the venue's clock (never back) and acknowledge the orders whose latency has passed."""
        if ts > self.clock:
            self.clock = ts
            self._meta_dirty = True
        transit = self._in_transit
        while transit and transit[0].ack_ts <= self.clock:
            self._arrive(transit.popleft())

    # --- durability -------------------------------------------------------------------------------
    def flush(self) -> int:
        """Commit every change since the last flush in one transaction, then deliver the queued reports.

        Returns the number of reports delivered. If the commit fails nothing is delivered and the
        changes stay pending for the next flush.
        """
        if self._queue and self._reports is None:
            raise RuntimeError("paper venue is not bound to an engine: its reports have nowhere to go")
        if self._dirty or self._new_fills or self._meta_dirty:
            meta = {"clock": str(self.clock), "duplicate_submits": str(self.duplicate_submits)}
            self._ledger.commit([rec.row() for rec in self._dirty.values()], self._new_fills, meta)
            for coid, rec in self._dirty.items():
                if rec.status not in _LIVE:
                    self._orders.pop(coid, None)  # done and on file: the ledger answers for it now
            self._dirty = {}
            self._new_fills = []
            self._meta_dirty = False
        delivered = 0
        queue = self._queue
        while queue:
            name, args = queue.popleft()  # popped first: a failing handler does not see it again
            getattr(self._reports, name)(*args)
            delivered += 1
        return delivered

    @property
    def pending_reports(self) -> int:
        """Reports waiting for the next flush."""
        return len(self._queue)

    def close(self) -> None:
        """Close the ledger. Changes not flushed are dropped, exactly as in a crash: flush first."""
        self._ledger.close()

    def __enter__(self) -> PaperVenue:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- queries (what the venue has committed) ---------------------------------------------------
    def query(self, client_order_id: str) -> VenueOrderStatus:
        """What the venue knows about `client_order_id` (UNKNOWN if it never received it, or in transit)."""
        row = self._ledger.order(client_order_id)
        if row is None or row[_STATUS] == _IN_TRANSIT:
            return VenueOrderStatus(client_order_id, VenueStatus.UNKNOWN)
        return VenueOrderStatus(client_order_id, VenueStatus(row[_STATUS]), row[_VENUE_ORDER_ID], row[_REASON])

    def open_orders(self) -> list[VenueOrderStatus]:
        """Acknowledged orders that may still fill, in the order the venue received them."""
        return [
            VenueOrderStatus(row[_COID], VenueStatus(row[_STATUS]), row[_VENUE_ORDER_ID], row[_REASON])
            for row in self._ledger.orders_with_status(_WORKING)
        ]

    def fills(self, after_trade_ids: set[str] | frozenset[str] | None = None) -> list[VenueFill]:
        """Every fill, in the order they happened, leaving out the trade ids the caller already has."""
        known = after_trade_ids or frozenset()
        return [f for f in map(_fill_from_row, self._ledger.fills()) if f.trade_id not in known]

    def positions(self) -> dict[str, Decimal]:
        """Net quantity per symbol (buys minus sells) over all fills; flat symbols are left out."""
        net: dict[str, Decimal] = {}
        for symbol, side, quantity in self._ledger.fill_quantities():
            q = Decimal(quantity)
            net[symbol] = net.get(symbol, ZERO) + (q if side == OrderSide.BUY.value else -q)
        return {s: q for s, q in net.items() if q}

    def order_count(self) -> int:
        """Orders the venue has on file (every status)."""
        return self._ledger.order_count()

    def history(self, client_order_id: str) -> VenueOrderRecord | None:
        """The venue's record of one order with its fills; None if it never received it."""
        row = self._ledger.order(client_order_id)
        if row is None:
            return None
        rec = _VenueOrder.from_row(row)
        status = VenueStatus.UNKNOWN if rec.status == _IN_TRANSIT else VenueStatus(rec.status)
        return VenueOrderRecord(
            rec.order_id,
            rec.venue_order_id,
            rec.symbol,
            rec.side,
            rec.type,
            rec.quantity,
            rec.filled,
            status,
            rec.acknowledged,
            rec.status == _IN_TRANSIT,
            rec.ack_ts,
            rec.reason,
            tuple(map(_fill_from_row, self._ledger.fills(client_order_id))),
        )

    def replay_reports(self, orders: Iterable[Order], reports: ExecutionReports | None = None) -> int:
        """Deliver the reports the engine missed for its `orders` (its own projections), from the ledger.

        Per order: the acknowledgement if the engine has none, the fills whose trade id it lacks, then
        the rejection, cancellation or expiry if the engine still has the order open. Orders unknown to
        the venue get nothing (the engine settles them with `query`, or the ack comes once the order's
        latency has passed). An order the engine has PENDING_CANCEL that the venue still works lost its
        cancel request in the crash: the engine sends it again. Returns the reports delivered.
        """
        target = reports or self._reports
        if target is None:
            raise RuntimeError("paper venue is not bound to an engine and no reports target was given")
        sent = 0
        for order in orders:
            record = self.history(order.order_id)
            if record is None or record.status is VenueStatus.UNKNOWN:
                continue
            engine_open = order.status.is_open
            if record.status is VenueStatus.REJECTED:
                if engine_open:
                    target.on_rejected(order.order_id, record.reason)
                    sent += 1
                continue
            if record.acknowledged and engine_open and not order.venue_order_id:
                target.on_accepted(order.order_id, record.venue_order_id)
                sent += 1
            for f in record.fills:
                if f.trade_id not in order.trade_ids:
                    target.on_filled(order.order_id, f.trade_id, f.quantity, f.price, f.fee)
                    sent += 1
            if not order.status.is_open or order.status is OrderStatus.FILLED:
                continue
            if record.status is VenueStatus.CANCELED:
                target.on_canceled(order.order_id, record.reason)
                sent += 1
            elif record.status is VenueStatus.EXPIRED:
                target.on_expired(order.order_id)
                sent += 1
        return sent

    # --- internals --------------------------------------------------------------------------------
    def _report(self, name: str, *args: Any) -> None:
        self._queue.append((name, args))

    def _stored_status(self, client_order_id: str) -> str | None:
        row = self._ledger.order(client_order_id)
        return None if row is None else str(row[_STATUS])

    def _arrive(self, rec: _VenueOrder) -> None:
        self._dirty[rec.order_id] = rec
        reason = self._injected_reject(rec)
        if reason:
            self._finish(rec, VenueStatus.REJECTED, reason)
            self._report("on_rejected", rec.order_id, reason)
            return
        rec.status = VenueStatus.WORKING.value
        rec.acknowledged = True
        self._report("on_accepted", rec.order_id, rec.venue_order_id)
        working = self._working.setdefault(rec.symbol, [])
        working.append(rec)
        last = self._last_bar.get(rec.symbol) if self.fill_on_arrival else None
        if last is not None:
            # live-like paper trading: a marketable order trades on arrival at the last price,
            # within the share of the last bar's volume; the rest works on the next bars
            quote = Bar(rec.symbol, self.clock, last.close, last.close, last.close, last.close, last.volume)
            mine = [rec]
            self._match(quote, mine, on_arrival=True)
            if not mine:
                working.remove(rec)

    def _injected_reject(self, rec: _VenueOrder) -> str:
        if rec.symbol in self.reject_symbols:
            return f"venue rejected the order: {rec.symbol} is not accepted at this venue (injected reject)"
        if self.reject_rate and random.Random(f"{self.seed}:{rec.order_id}").random() < self.reject_rate:
            return f"venue rejected the order: injected reject (rate {self.reject_rate})"
        return ""

    def _finish(self, rec: _VenueOrder, status: VenueStatus, reason: str) -> None:
        rec.status = status.value
        rec.reason = reason
        self._dirty[rec.order_id] = rec

    def _capacity(self, bar: Bar) -> Decimal:
        lot = self._lots.get(bar.symbol, ONE)
        volume = to_decimal(bar.volume) if bar.volume > 0 else ZERO
        return (self.participation * volume // lot) * lot

    def _fill(self, rec: _VenueOrder, price_f: float, market_like: bool, quantity: Decimal, ts: int) -> None:
        price, fee = self._pricing.fill(rec, price_f, market_like, quantity)
        rec.fills += 1
        rec.filled += quantity
        rec.leaves -= quantity
        rec.fees += fee
        rec.status = (VenueStatus.FILLED if not rec.leaves else VenueStatus.PARTIALLY_FILLED).value
        self._dirty[rec.order_id] = rec
        self._fill_seq += 1
        trade_id = f"{self.venue}-T{self._fill_seq}"
        self._new_fills.append(
            (self._fill_seq, trade_id, rec.order_id, rec.symbol, rec.side.value, str(quantity), str(price), str(fee), ts)
        )
        self._report("on_filled", rec.order_id, trade_id, quantity, price, fee)
