"""Start-up of the engine: rebuild from the event log, then reconcile with the venue.

`rebuild` folds the engine's stream into a fresh `TradingState` (a corrupt or gapped log stops the
start with `CorruptEventLog`, naming the first bad sequence number), restores the risk limits in
force, re-deploys the strategies as the lifecycle events left them, and finds where the feed should
go on (the last bar the log has seen). The risk monitors start from their saved state and are fed,
silenced, the prices and fills logged after it (from the first event when nothing was saved), so
drawdown peaks, daily baselines, the VaR window and the breaches already acted on survive a restart.

`reconcile` then asks the venue about every order the log does not know to be finished, and about
every fill: whatever the log missed because the engine died between the venue's commit and its own
(an acknowledgement, fills, a cancel) is applied now, each preceded by a `ReconciliationDifference`
event that says what differed and what was done. An order the log sent but the venue never received
(the engine died before the venue committed it) is rejected as such. Finally the net position per
instrument in the log must equal the venue's; if not, reconciliation fails and trading stays blocked.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from qlcore.events.facts import (
    LIFECYCLE_EVENTS,
    CommandCompleted,
    ReconciliationDifference,
    ReconciliationPassed,
    ReconciliationStarted,
    StrategyDeployed,
    StrategyDisabled,
    StrategyFailed,
    StrategyPaused,
    StrategyResumed,
    StrategyStopped,
    TradingModeChanged,
)
from qlcore.events.types import (
    Event,
    MarksUpdated,
    OrderFilled,
    OrderInitialized,
    RiskLimitsChanged,
)
from qlcore.execution.contract import VenueStatus
from qlcore.model.enums import OrderStatus
from qlcore.model.money import ZERO
from qlcore.model.state import TradingState
from qlcore.risk.monitors import SavedMonitors

if TYPE_CHECKING:
    from qlcore.engine.derived_state import Saved
    from qlcore.engine.service import EngineService
    from qlcore.strategies.manager import StrategyManager


@dataclass
class Rebuilt:
    events: int = 0
    orders: int = 0
    strategies: int = 0
    resume_ts: int | None = None
    completed_commands: dict[int, tuple[bool, str]] = field(default_factory=dict)
    monitors_from: int | None = None  # the risk monitors' state was restored at this seq, then fed after it
    failed: list[Event] = field(default_factory=list)  # strategies that failed while re-deployed (not yet logged)

    def describe(self) -> str:
        return json.dumps(
            {"events": self.events, "orders": self.orders, "strategies": self.strategies, "resume_ts": self.resume_ts,
             "monitors_from": self.monitors_from},
            sort_keys=True,
        )


def _readable(engine: EngineService, saved: Saved | None) -> tuple[int, SavedMonitors] | None:
    """The monitors' saved state and its seq, or None (with an alert if it could not be read: the
    whole log is fed instead)."""
    if saved is None:
        return None
    try:
        return saved.seq, SavedMonitors.parse(saved.body)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        engine.alert("warning", "risk monitors", f"saved state at seq {saved.seq} unreadable ({exc!r}); "
                     "feeding them the whole log instead")
        return None


def rebuild(engine: EngineService) -> Rebuilt:
    from qlcore.engine import derived_state

    kernel, manager, monitors = engine.kernel, engine.manager, engine.monitors
    state = kernel.state = TradingState()  # the monitors read the positions of the kernel's state
    out = Rebuilt()
    blank = SavedMonitors.parse(monitors.checkpoint())
    saved = _readable(engine, derived_state.load(engine.db, engine.config.engine_id, derived_state.MONITORS, engine.config.stream))
    # the monitors are fed the events after `from_seq` and restored at it; what they did before it is
    # overwritten (a resume to ACTIVE there would otherwise reset peaks the saved state reflects)
    from_seq, monitors_saved = saved if saved is not None else (0, blank)
    monitors.silenced = True
    last_seq = 0
    lifecycle: list[Event] = []
    fills: list[OrderFilled] = []
    last_ts = 0
    for seq, event in engine.store.iter_events(engine.config.stream):
        state.apply(event)
        out.events += 1
        last_seq = seq
        t = type(event)
        ts = event.ts  # type: ignore[attr-defined]
        if ts > last_ts:
            last_ts = ts
        if seq > from_seq:
            if t is MarksUpdated:
                monitors.on_marks(event)  # type: ignore[arg-type]
            elif t is OrderFilled:
                monitors.on_fill(event)  # type: ignore[arg-type]
        elif seq == from_seq:
            monitors.restore(monitors_saved)
            out.monitors_from = seq
        if t is OrderInitialized:
            out.orders += 1
        elif t is OrderFilled:
            fills.append(event)  # type: ignore[arg-type]
        elif t is MarksUpdated:
            out.resume_ts = ts if out.resume_ts is None else max(out.resume_ts, ts)
        elif t in LIFECYCLE_EVENTS:
            lifecycle.append(event)
            if t is StrategyDeployed:
                monitors.add_strategy(event.strategy_id, json.loads(event.details)["allocation"])  # type: ignore[attr-defined]
            elif t is StrategyDisabled:
                engine.guard.apply(event)  # type: ignore[arg-type]
        elif t is TradingModeChanged:
            engine.modes.apply(event)  # type: ignore[arg-type]
        elif t is RiskLimitsChanged:
            engine.risk.apply(event)  # type: ignore[arg-type]
        elif t is CommandCompleted:
            out.completed_commands[event.command_id] = (event.accepted, event.reason)  # type: ignore[attr-defined]
    monitors.silenced = False
    if from_seq > last_seq:
        monitors.restore(blank)
        engine.alert("warning", "risk monitors", f"saved state at seq {from_seq} is beyond the log's end "
                     f"({last_seq}); the monitors start afresh")
    engine.clock.now = last_ts
    engine.risk.book.bind(state)
    for symbol, price in state.marks.items():
        manager._last_close[symbol] = float(price)
    out.strategies, out.failed = _redeploy(engine, lifecycle)
    for fill in fills:
        manager._on_fill(fill)
    manager._apply_pending()
    _recover_commands(engine, out.completed_commands)
    return out


def _redeploy(engine: EngineService, lifecycle: list[Event]) -> tuple[int, list[Event]]:
    """Deploy the strategies again and bring each to its last lifecycle state (nothing is re-recorded:
    the manager's listeners are attached after the rebuild). Returns how many, and the `StrategyFailed`
    of those whose `on_start` raised now (for the log).

    A strategy the log says FAILED is deployed without being started and set FAILED: none of its code
    runs again (no crash loop on the bar that failed it) until a person stops it."""
    from qlcore.strategies.manager import StrategyState

    manager = engine.manager
    failed = {e.strategy_id for e in lifecycle if isinstance(e, StrategyFailed)}
    with manager.restoring():
        _replay_lifecycle(manager, lifecycle, failed)
    new_failures: list[Event] = [e for e in manager.events if type(e) is StrategyFailed]
    manager.events.clear()
    for sid in sorted(failed):
        fault = manager.fault(sid)
        if fault is not None and manager.state(sid) is StrategyState.FAILED:
            engine.alert("error", "strategies", f"{sid} is FAILED ({fault.describe()}); it stays so until stopped: "
                         f"qlcore strategy stop {sid} [--flatten]")
    return len(manager.strategy_ids), new_failures


def _replay_lifecycle(manager: StrategyManager, lifecycle: list[Event], failed: set[str]) -> None:
    from qlcore.strategies.manager import StrategyState

    for event in lifecycle:
        sid = event.strategy_id  # type: ignore[attr-defined]
        t = type(event)
        if t is StrategyDeployed:
            d = json.loads(event.details)  # type: ignore[attr-defined]
            manager.deploy(
                d["strategy"],
                d["params"],
                symbols=d["symbols"],
                allocation=d["allocation"],
                limits=d.get("limits") or None,
                strategy_id=sid,
                actor=event.actor,  # type: ignore[attr-defined]
                start=d.get("start", True) and sid not in failed,
            )
        elif t is StrategyStopped:
            manager.stop(sid, actor=event.actor)  # type: ignore[attr-defined]
        elif t is StrategyFailed:
            if manager.state(sid) is not StrategyState.FAILED:
                manager.restore_failed(event)  # type: ignore[arg-type]
        elif sid in failed or manager.state(sid) is StrategyState.FAILED:
            continue  # pauses and resumes before its failure (or a failure met now): nothing to run
        elif t is StrategyPaused or t is StrategyDisabled:
            manager.pause(sid, actor=event.actor)  # type: ignore[attr-defined]
        elif t is StrategyResumed:
            if json.loads(event.details or "{}").get("first_start"):  # type: ignore[attr-defined]
                manager.start(sid, actor=event.actor)  # type: ignore[attr-defined]
            else:
                manager.resume(sid, actor=event.actor)  # type: ignore[attr-defined]


def _recover_commands(engine: EngineService, completed: dict[int, tuple[bool, str]]) -> None:
    """Commands this engine took but did not complete in the table: the log says whether they were
    carried out (complete them with the logged outcome); if not, they are taken again now."""
    from qlcore.control.commands import PENDING
    from qlcore.store.tables import commands

    consumer = engine.config.engine_id
    redo = []
    for command in engine.queue.in_flight(consumer, target=consumer):
        outcome = completed.get(command.id)
        if outcome is not None:
            engine.queue.complete(command.id, outcome[0], outcome[1], consumer=consumer)
        else:
            redo.append(command.id)
    if redo:
        from sqlalchemy import update

        with engine.db.begin() as conn:
            conn.execute(
                update(commands).where(commands.c.id.in_(redo)).values(status=PENDING, consumer=None, ts_taken=None)
            )


# --- reconciliation ---------------------------------------------------------------------------------
@dataclass
class Reconciliation:
    checked: int = 0
    differences: list[ReconciliationDifference] = field(default_factory=list)
    position_breaks: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.position_breaks

    def summary(self) -> str:
        if self.passed:
            return f"reconciliation passed: {self.checked} orders checked, {len(self.differences)} differences resolved"
        breaks = "; ".join(f"{s}: log {a} venue {b}" for s, (a, b) in sorted(self.position_breaks.items()))
        return f"reconciliation FAILED, positions differ ({breaks}); trading is blocked"


def reconcile(engine: EngineService) -> Reconciliation:
    kernel, venue = engine.kernel, engine.venue
    state = kernel.state
    out = Reconciliation()
    open_orders = [o for o in state.orders.values() if o.status.is_open]
    kernel.emit(ReconciliationStarted(engine.clock.now, venue.venue, len(open_orders)))

    def differ(kind: str, order_id: str, detail: str, resolution: str) -> None:
        event = ReconciliationDifference(engine.clock.now, kind, order_id, detail, resolution)
        out.differences.append(event)
        kernel.emit(event)

    known_trades = {t for o in state.orders.values() for t in o.trade_ids}
    missing = defaultdict(list)
    for fill in venue.fills(after_trade_ids=known_trades):
        missing[fill.client_order_id].append(fill)
    to_check = {o.order_id for o in open_orders} | set(missing)
    for order_id in sorted(to_check):
        out.checked += 1
        order = state.orders.get(order_id)
        answer = venue.query(order_id)
        if order is None:  # cannot happen with a write-ahead log; say so loudly if it does
            working = answer.status in (VenueStatus.WORKING, VenueStatus.PARTIALLY_FILLED)
            differ(
                "unknown_order", order_id, f"venue has {answer.status.value}, the log has no such order",
                "cancel at venue" if working else "left to the position check",
            )
            if working:
                venue.cancel(order_id)
            continue
        if answer.status is VenueStatus.UNKNOWN:
            record = venue.history(order_id)
            if record is not None and record.in_transit:  # received, not yet acknowledged (latency)
                continue
            differ("not_at_venue", order_id, f"log {order.status.value}, venue never received it", "rejected")
            kernel.on_rejected(order_id, "reconciliation: the venue never received the order")
            continue
        if order.status is OrderStatus.SUBMITTED and answer.status is not VenueStatus.REJECTED:
            differ("missing_ack", order_id, f"venue {answer.status.value}", "accepted")
            kernel.on_accepted(order_id, answer.venue_order_id)
        for fill in missing.get(order_id, ()):
            differ("missing_fill", order_id, f"trade {fill.trade_id}: {fill.side} {fill.quantity} @ {fill.price}", "applied")
            kernel.on_filled(order_id, fill.trade_id, fill.quantity, fill.price, fill.fee)
        order = state.orders[order_id]
        if not order.status.is_open:
            continue
        final = {
            VenueStatus.CANCELED: kernel.on_canceled,
            VenueStatus.REJECTED: kernel.on_rejected,
        }.get(answer.status)
        if final is not None:
            differ("missing_final", order_id, f"venue {answer.status.value}", answer.status.value.lower())
            final(order_id, answer.reason or f"reconciliation: {answer.status.value.lower()} at the venue")
        elif answer.status is VenueStatus.EXPIRED:
            differ("missing_final", order_id, "venue EXPIRED", "expired")
            kernel.on_expired(order_id)
        elif order.status is OrderStatus.PENDING_CANCEL and answer.status in (
            VenueStatus.WORKING,
            VenueStatus.PARTIALLY_FILLED,
        ):
            differ("cancel_lost", order_id, "cancel requested, the venue still works the order", "cancel sent again")
            venue.cancel(order_id)
    theirs = venue.positions()
    ours: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for (_sid, symbol), pos in state.positions.items():
        ours[symbol] += pos.quantity
    for symbol in sorted(set(ours) | set(theirs)):
        a, b = ours.get(symbol, ZERO), theirs.get(symbol, ZERO)
        if a != b:
            out.position_breaks[symbol] = (a, b)
            differ("position", "", f"{symbol}: log {a}, venue {b}", "trading blocked")
    if out.passed:
        kernel.emit(ReconciliationPassed(engine.clock.now, venue.venue, out.checked, len(out.differences)))
    return out
