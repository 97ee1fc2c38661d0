"""The lineage of an order: strategy -> pre-trade checks -> order -> fills -> P&L.

From the audit log (`trace`): the order's entries, its events decoded back from them and folded
into an `Order` (so the status is the state machine's, not a guess), the risk decisions with
their rules and reasons, and the P&L each fill realized. From the event store (`trace_events`)
when the order was not recorded in the audit log: the same, minus the list of rules that passed
(the store only keeps denials), with the P&L folded over the run's fills.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import orjson

from qlcore.audit.log import AuditEntry, AuditLog
from qlcore.events.codec import decode
from qlcore.events.store import EventStore
from qlcore.events.types import Event, OrderDenied, OrderFilled, OrderInitialized, OrderSubmitted
from qlcore.model.enums import OrderSide
from qlcore.model.money import ZERO
from qlcore.model.orders import Order
from qlcore.model.positions import Position
from qlcore.risk.base import money
from qlcore.risk.calendar import fmt_ts


@dataclass(frozen=True, slots=True)
class FillLine:
    ts: int
    trade_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    position_after: Decimal


@dataclass
class Lineage:
    """Everything known about one order, in order."""

    order_id: str
    stream: str
    source: str  # "audit log" or "event store"
    order: Order | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)  # {"ts", "passed", "rules", "reason"}
    fills: list[FillLine] = field(default_factory=list)
    steps: list[tuple[int, str, str, str]] = field(default_factory=list)  # (ts, action, actor, summary)

    @property
    def strategy_id(self) -> str | None:
        return self.order.strategy_id if self.order is not None else None

    @property
    def realized_pnl(self) -> Decimal:
        return sum((f.realized_pnl for f in self.fills), ZERO)

    @property
    def fees(self) -> Decimal:
        return sum((f.fee for f in self.fills), ZERO)

    def render(self) -> str:
        """Text for the terminal: one line per step, then the outcome."""
        o = self.order
        run = f" (run {self.stream})" if self.stream else ""
        lines = [f"order {self.order_id}{run}, from the {self.source}"]
        if o is not None:
            px = f" @ {o.price}" if o.price is not None else ""
            stop = f" stop {o.trigger_price}" if o.trigger_price is not None else ""
            lines.append(
                f"  strategy {o.strategy_id}: {o.symbol} {o.side.value} {o.quantity} {o.order_type.value}{px}{stop}"
                f" {o.time_in_force.value}"
            )
        for ts, action, actor, summary in self.steps:
            lines.append(f"  {fmt_ts(ts):<29} {action:<22} {actor:<18} {summary}".rstrip())
        if o is not None:
            outcome = f"  -> {o.status.value}"
            if o.filled_quantity:
                outcome += f": filled {o.filled_quantity} @ avg {o.avg_fill_price}, fees {money(self.fees)}"
                outcome += f", realized P&L {money(self.realized_pnl)}"
            elif o.reason:
                outcome += f": {o.reason}"
            lines.append(outcome)
        return "\n".join(lines)


def _summary(event: Event, pnl: dict[str, Any] | None) -> str:
    name = type(event).__name__
    if name == "OrderInitialized":
        return ""
    if name == "OrderFilled":
        text = f"{event.quantity} @ {event.price} fee {money(event.fee)} (trade {event.trade_id})"  # type: ignore[attr-defined]
        if pnl is not None:
            text += f" -> position {pnl['position_after']}, realized P&L {money(Decimal(pnl['realized_pnl']))}"
        return text
    for attr in ("reason", "venue_order_id"):
        value = getattr(event, attr, "")
        if value:
            return str(value)
    return ""


def trace(log: AuditLog, order_id: str, *, stream: str | None = None) -> list[Lineage]:
    """The order's lineage from the audit log, one per run that has this order id (newest first).

    `order_id` is a plain id (``O-3``: every run that has it) or ``<stream>/<order id>``."""
    if stream:
        subjects = [f"{stream}/{order_id}"]
    elif "/" in order_id:
        subjects = [order_id]
    else:
        subjects = log.subjects_like(order_id)
    if not subjects:
        return []
    by_subject: dict[str, list[AuditEntry]] = {}
    for entry in log.entries(subjects=subjects):
        by_subject.setdefault(entry.subject, []).append(entry)
    newest_first = sorted(by_subject.values(), key=lambda entries: entries[-1].seq, reverse=True)
    return [_from_entries(entries[0].subject, entries) for entries in newest_first]


def _from_entries(subject: str, entries: list[AuditEntry]) -> Lineage:
    stream, _, oid = subject.rpartition("/")
    lin = Lineage(oid, stream, "audit log")
    for entry in entries:
        details = orjson.loads(entry.details)
        if entry.action.startswith("risk."):
            denial = details.get("denial") or {}
            check = {"ts": entry.ts, "passed": details["passed"], "rules": details["rules"], "reason": denial.get("reason", "")}
            lin.checks.append(check)
            summary = (
                f"{len(check['rules'])} rules passed: {', '.join(check['rules'])}" if check["passed"]
                else check["reason"]
            )
            lin.steps.append((entry.ts, entry.action, entry.actor, summary))
            continue
        if "type" in details and "event" in details:
            event = decode(details["type"], orjson.dumps(details["event"]))
            _apply(lin, event)
            pnl = details.get("pnl")
            if isinstance(event, OrderFilled):
                lin.fills.append(FillLine(
                    event.ts, event.trade_id, event.quantity, event.price, event.fee,
                    Decimal(pnl["realized_pnl"]) if pnl else ZERO,
                    Decimal(pnl["position_after"]) if pnl else ZERO,
                ))
            lin.steps.append((entry.ts, entry.action, entry.actor, _summary(event, pnl)))
        else:  # commands and other entries about this order
            lin.steps.append((entry.ts, entry.action, entry.actor, orjson.dumps(details).decode()))
    return lin


def _apply(lin: Lineage, event: Event) -> None:
    if isinstance(event, OrderInitialized):
        lin.order = Order(event)
    elif lin.order is not None:
        lin.order.apply(event)


def trace_events(store: EventStore, stream: str, order_id: str) -> Lineage | None:
    """The order's lineage from a stored event stream (None if the stream has no such order)."""
    lin = Lineage(order_id, stream, "event store")
    positions: dict[tuple[str, str], Position] = {}
    found = False
    for event in store.events(stream):
        pnl = None
        if isinstance(event, OrderFilled):
            key = (event.strategy_id, event.symbol)
            pos = positions.get(key) or positions.setdefault(key, Position(*key))
            signed = event.quantity if event.side is OrderSide.BUY else -event.quantity
            realized = pos.apply_fill(signed, event.price, event.fee)
            pnl = {"realized_pnl": realized, "position_after": pos.quantity}
        if getattr(event, "order_id", None) != order_id:
            continue
        found = True
        _apply(lin, event)
        name = type(event).__name__
        if name == "OrderDenied":
            denied = cast(OrderDenied, event)  # matched by name
            lin.checks.append({"ts": denied.ts, "passed": False, "rules": [], "reason": denied.reason})
        elif name == "OrderSubmitted":
            lin.checks.append({"ts": cast(OrderSubmitted, event).ts, "passed": True, "rules": [], "reason": ""})
        if isinstance(event, OrderFilled) and pnl is not None:
            lin.fills.append(FillLine(event.ts, event.trade_id, event.quantity, event.price, event.fee,
                                      pnl["realized_pnl"], pnl["position_after"]))
        action = "order." + "".join("_" + c.lower() if c.isupper() else c for c in name[5:]).lstrip("_")
        lin.steps.append((event.ts, action, "", _summary(event, pnl)))  # type: ignore[attr-defined]
    return lin if found else None
