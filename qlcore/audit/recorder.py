"""Recording what happens onto the audit log: kernel events, risk decisions, limit changes, commands.

`AuditRecorder.attach(kernel)` subscribes to the kernel's bus, so every event the kernel emits
(orders, fills, funding, marks, the run's start and end) becomes an entry; `watch(risk)` adds
every pre-trade decision (the rules that ran, the denial) and every limit change;
`record_command` is the entry point for user commands. An order's entries share one subject,
``<stream>/<order id>`` (the run id or engine stream; order ids repeat across runs), and each
fill entry carries the P&L it realized, folded with the same `Position` arithmetic as the state.

An event entry's details are ``{"type": <event type>, "event": <its fields as stored>}``, so the
event can be decoded from the log again (that is how `trace` rebuilds an order).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from qlcore.audit.log import AuditEntry, AuditLog
from qlcore.events.codec import encode
from qlcore.events.types import (
    AccountFunded,
    Event,
    MarksUpdated,
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
    RiskLimitsChanged,
    RunFinished,
    RunStarted,
)
from qlcore.model.enums import OrderSide
from qlcore.model.positions import Position
from qlcore.risk.engine import RiskDecision, RiskEngine
from qlcore.strategies.base import Strategy

if TYPE_CHECKING:
    from qlcore.engine.kernel import Kernel

# event type -> (action, who causes it). "strategy" is replaced by the order's strategy.
_ACTIONS: dict[type, tuple[str, str]] = {
    OrderInitialized: ("order.initialized", "strategy"),
    OrderDenied: ("order.denied", "risk"),
    OrderSubmitted: ("order.submitted", "kernel"),
    OrderAccepted: ("order.accepted", "broker"),
    OrderRejected: ("order.rejected", "broker"),
    OrderFilled: ("order.filled", "broker"),
    OrderCancelRequested: ("order.cancel_requested", "strategy"),
    OrderCancelRejected: ("order.cancel_rejected", "broker"),
    OrderCanceled: ("order.canceled", "broker"),
    OrderExpired: ("order.expired", "broker"),
    RunStarted: ("run.started", "engine"),
    RunFinished: ("run.finished", "engine"),
    AccountFunded: ("account.funded", "engine"),
    MarksUpdated: ("marks.updated", "engine"),
}


class AuditRecorder:
    """Writes a kernel's events, a risk engine's decisions and users' commands to an `AuditLog`."""

    def __init__(self, log: AuditLog, *, stream: str = "") -> None:
        self.log = log
        self.stream = stream
        self._strategy_of: dict[str, str] = {}  # order id -> strategy id
        self._positions: dict[tuple[str, str], Position] = {}
        self.skip: frozenset[type] = frozenset()  # event types not worth an entry (e.g. marks every second)

    # --- wiring --------------------------------------------------------------------------------
    def attach(self, kernel: Kernel) -> None:
        """Record every event `kernel` publishes from now on (its stream names the entries' run)."""
        if not self.stream and kernel.writer is not None:
            self.stream = kernel.writer.stream
        for order_id, order in kernel.state.orders.items():
            self._strategy_of[order_id] = order.strategy_id
        for key, pos in kernel.state.positions.items():
            copy = self._positions[key] = Position(*key)
            copy.quantity, copy.cost, copy.realized_pnl, copy.fees = pos.quantity, pos.cost, pos.realized_pnl, pos.fees
        kernel.bus.subscribe(self.on_event)

    def watch(self, risk: RiskEngine) -> None:
        """Record `risk`'s decisions (rules run, denial) and its limit changes."""
        risk.decision_listeners.append(self.on_decision)
        risk.event_listeners.append(self.on_event)

    def watcher(self, strategy_id: str = "audit") -> Strategy:
        """A strategy that never trades and attaches this recorder to the kernel it is bound to:
        the way in for a `BacktestEngine`, which builds its kernel inside `run`."""
        return _Watcher(self, strategy_id=strategy_id)

    # --- recording -----------------------------------------------------------------------------
    def subject(self, order_id: str) -> str:
        return f"{self.stream}/{order_id}" if self.stream else order_id

    def on_event(self, event: Event) -> AuditEntry | None:
        """Record one event (a bus handler); None for a type in `skip`."""
        et = type(event)
        if et in self.skip:
            return None
        if et is RiskLimitsChanged:
            return self._limits_changed(event)  # type: ignore[arg-type]
        if et is RunStarted and not self.stream:
            self.stream = event.run_id  # type: ignore[attr-defined]
        action, actor = _ACTIONS.get(et, (f"event.{et.__name__}", "engine"))
        type_name, payload = encode(event)
        details: dict[str, Any] = {"type": type_name, "event": orjson.loads(payload)}
        order_id = getattr(event, "order_id", None)
        if order_id is not None:
            if et is OrderInitialized:
                self._strategy_of[order_id] = event.strategy_id  # type: ignore[attr-defined]
            if actor == "strategy":
                actor = f"strategy:{self._strategy_of.get(order_id, '?')}"
            if et is OrderFilled:
                details["pnl"] = self._fill_pnl(event)  # type: ignore[arg-type]
            subject = self.subject(order_id)
        else:
            subject = self.stream or type_name
        entry = self.log.record(actor, action, subject, details, ts=event.ts)  # type: ignore[attr-defined]
        if et is RunFinished:
            self.log.flush()
        return entry

    def on_decision(self, decision: RiskDecision) -> AuditEntry:
        """Record one pre-trade decision: the rules that ran and, if denied, the rule, limit and value."""
        details: dict[str, Any] = {"passed": decision.passed, "rules": list(decision.rules)}
        if decision.denial is not None:
            d = decision.denial
            details["denial"] = {"rule": d.rule, "kind": d.kind, "limit": d.limit, "value": d.value, "reason": d.reason}
        action = "risk.passed" if decision.passed else "risk.denied"
        return self.log.record("risk", action, self.subject(decision.order_id), details, ts=decision.ts)

    def record_command(
        self,
        user: str,
        command: str,
        params: Mapping[str, Any],
        outcome: str,
        *,
        ts: int | None = None,
        subject: str | None = None,
    ) -> AuditEntry:
        """Record a user's command and what came of it (accepted, refused and why, ...), refused ones too."""
        if not user:
            raise ValueError("a command is recorded with the user who sent it")
        if subject is None:
            order_id = params.get("order_id")
            subject = self.subject(str(order_id)) if order_id else f"command/{command}"
        details = {"params": dict(params), "outcome": outcome}
        entry = self.log.record(f"user:{user}", f"command.{command}", subject, details, ts=ts)
        self.log.flush()  # a command's record is never left in a buffer
        return entry

    def flush(self) -> None:
        self.log.flush()

    def _limits_changed(self, event: RiskLimitsChanged) -> AuditEntry:
        details = {"config": orjson.loads(event.config), "reason": event.reason}
        entry = self.log.record(event.actor, "risk.limits_changed", "risk/limits", details, ts=event.ts)
        self.log.flush()
        return entry

    def _fill_pnl(self, fill: OrderFilled) -> dict[str, Any]:
        key = (fill.strategy_id, fill.symbol)
        pos = self._positions.get(key)
        if pos is None:
            pos = self._positions[key] = Position(*key)
        signed = fill.quantity if fill.side is OrderSide.BUY else -fill.quantity
        realized = pos.apply_fill(signed, fill.price, fill.fee)
        return {
            "realized_pnl": realized,
            "position_after": pos.quantity,
            "avg_price_after": pos.avg_price,
            "strategy_realized_pnl": pos.realized_pnl,
        }


class _Watcher(Strategy):
    name = "audit_watcher"
    description = "attaches an audit recorder to the engine it runs in (never trades)"

    def __init__(self, recorder: AuditRecorder, *, strategy_id: str = "audit") -> None:
        super().__init__(strategy_id=strategy_id)
        self._recorder = recorder

    def bind(self, kernel: Kernel, symbols: tuple[str, ...]) -> None:
        super().bind(kernel, symbols)
        self._recorder.attach(kernel)

    def on_stop(self) -> None:
        self._recorder.flush()
