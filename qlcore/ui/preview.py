"""The order ticket's pre-trade preview: the engine's checks run against its published state.

The dashboards hold no engine objects, so the preview rebuilds what the checks need from the
snapshot: a `TradingState` with the account's cash, the positions (quantity and cost), the marks
and the open orders, and a `RiskConfig` with the limits the engine reports. Then it runs the same
code the engine runs: `validate_order` for the order's form and `RiskEngine.evaluate` for the
limits. It is a preview, not a promise: the engine checks again when the command arrives.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from qlcore.events.types import OrderAccepted, OrderInitialized, OrderSubmitted
from qlcore.execution.validation import validate_order
from qlcore.model.enums import OrderSide, OrderType
from qlcore.model.instruments import equity
from qlcore.model.orders import Order
from qlcore.model.positions import Position
from qlcore.model.state import TradingState
from qlcore.risk.config import FIELDS, RiskConfig, RiskConfigError
from qlcore.risk.engine import RiskEngine


@dataclass(frozen=True, slots=True)
class Preview:
    """The outcome: `ok`, and the reasons it would be refused (form, trading mode, risk rule)."""

    ok: bool
    reasons: tuple[str, ...]
    notional: Decimal | None = None

    def __str__(self) -> str:
        if self.ok:
            extra = f", notional {self.notional:,.2f}" if self.notional is not None else ""
            return f"pre-trade check passed{extra}"
        return "would be refused: " + "; ".join(self.reasons)


def _dec(value: Any, field: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{field}: not a decimal number: {value!r}") from None


def state_from_snapshot(snapshot: Mapping[str, Any]) -> TradingState:
    """A `TradingState` with the snapshot's cash, positions, marks and open orders."""
    state = TradingState()
    account = snapshot.get("account") or {}
    state.cash = _dec(account.get("cash", "0"), "account.cash")
    for p in snapshot.get("positions") or []:
        pos = Position(str(p["strategy_id"]), str(p["symbol"]))
        pos.quantity = _dec(p.get("quantity", "0"), "position.quantity")
        avg = p.get("avg_price")
        pos.cost = pos.quantity * _dec(avg, "position.avg_price") if avg not in (None, "") else Decimal(0)
        pos.realized_pnl = _dec(p.get("realized_pnl", "0") or "0", "position.realized_pnl")
        state.positions[(pos.strategy_id, pos.symbol)] = pos
        if p.get("mark") not in (None, ""):
            state.marks[pos.symbol] = _dec(p["mark"], "position.mark")
    for o in snapshot.get("orders") or []:
        if str(o.get("status", "")).upper() not in {"SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL"}:
            continue
        ts = int(o.get("ts") or 0)
        price = o.get("price")
        init = OrderInitialized(
            ts, str(o["order_id"]), str(o["strategy_id"]), str(o["symbol"]), OrderSide(o["side"]),
            OrderType(o.get("order_type") or "MARKET"), _dec(o["quantity"], "order.quantity"),
            _dec(price, "order.price") if price not in (None, "") and o.get("order_type") != "MARKET" else None,
        )
        order = Order(init)
        order.apply(OrderSubmitted(ts, init.order_id))
        order.apply(OrderAccepted(ts, init.order_id, init.order_id))
        state.orders[init.order_id] = order
    return state


def limits_from_snapshot(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The limits the engine reports as a risk-config mapping (``scope`` account, ``strategy:<id>``, ``instrument:<symbol>``)."""
    sections: dict[str, Any] = {}
    for lim in (snapshot.get("risk") or {}).get("limits") or []:
        name, scope, value = lim.get("name"), str(lim.get("scope") or "account"), lim.get("limit")
        if name not in FIELDS or value in (None, ""):
            continue
        kind, _, ident = scope.replace(".", ":", 1).partition(":")
        if kind == "account":
            sections.setdefault("account", {})[name] = value
        elif kind in ("strategy", "instrument") and ident:
            sections.setdefault(kind, {}).setdefault(ident, {})[name] = value
    return sections


def config_from_snapshot(snapshot: Mapping[str, Any]) -> RiskConfig:
    """A `RiskConfig` with the limits the engine reports."""
    sections = limits_from_snapshot(snapshot)
    try:
        return RiskConfig.from_mapping(sections)
    except RiskConfigError:
        # a limit the preview cannot place: check with the account's limits only rather than none
        return RiskConfig.from_mapping({"account": sections.get("account", {})}) if "account" in sections else RiskConfig()


def preview_order(snapshot: Mapping[str, Any], ticket: Mapping[str, Any]) -> Preview:
    """Would the engine take this `order.submit` payload now? Runs the form check, the mode and the risk chain."""
    order_type = OrderType(ticket.get("order_type") or "MARKET")
    price = ticket.get("price")
    init = OrderInitialized(
        time.time_ns(), "preview", str(ticket["strategy_id"]), str(ticket["symbol"]).upper(),
        OrderSide(ticket["side"]), order_type, _dec(ticket["quantity"], "quantity"),
        _dec(price, "price") if price not in (None, "") else None,
    )
    order = Order(init)
    reasons: list[str] = []
    form = validate_order(order, equity(order.symbol))
    if form:
        reasons.append(form)
    state = state_from_snapshot(snapshot)
    mode = str((snapshot.get("account") or {}).get("mode") or "ACTIVE")
    if mode == "HALTED":
        reasons.append("trading mode: HALTED (an admin must resume trading)")
    elif mode == "REDUCING":
        pos = state.positions.get((order.strategy_id, order.symbol))
        held = pos.quantity if pos is not None else Decimal(0)
        signed = order.quantity if order.side is OrderSide.BUY else -order.quantity
        if held == 0 or abs(held + signed) > abs(held) or (held > 0) != (held + signed >= 0):
            reasons.append(f"trading mode: REDUCING allows only orders that reduce a position (holding {held})")
    strategies = {s.get("strategy_id") for s in snapshot.get("strategies") or []}
    if strategies and order.strategy_id not in strategies:
        reasons.append(f"strategy_id: {order.strategy_id!r} is not deployed on this engine")
    if not form:
        denial = RiskEngine(config_from_snapshot(snapshot)).evaluate(order, state)
        if denial is not None:
            reasons.append(denial.reason)
    px = order.price if order.price is not None else state.marks.get(order.symbol)
    return Preview(not reasons, tuple(reasons), None if px is None else order.quantity * px)
