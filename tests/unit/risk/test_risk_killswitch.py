"""The kill switch: halt, cancel everything at the broker, optionally flatten, and resume by an authorised user."""
from __future__ import annotations

from decimal import Decimal

import pytest
from risk_desk import Desk, denied, passed

from qlcore.events.facts import TradingModeChanged
from qlcore.events.types import Event, OrderCanceled, OrderCancelRequested
from qlcore.model.enums import OrderSide, OrderStatus, OrderType
from qlcore.risk.killswitch import HaltSummary, halt, resume_trading
from qlcore.risk.modes import (
    ACCOUNT,
    FLATTEN_TAG,
    ModeConfig,
    ModeGate,
    NotAuthorisedError,
    TradingMode,
    TradingModes,
)

D = Decimal
M = TradingMode
PRICES = {"AAPL": "100", "MSFT": "50", "IBM": "120"}


def desk_with_book() -> tuple[Desk, TradingModes, list[Event]]:
    """Positions in three symbols (one short, one offset between strategies) and resting orders in each."""
    desk = Desk({}, prices=PRICES)
    modes = TradingModes.for_kernel(desk.kernel, ModeConfig(frozenset({"alice"})))
    desk.kernel.risk = ModeGate(modes, desk.risk)
    desk.fill("BUY", 100, "AAPL", "100", strategy="s1")
    desk.fill("SELL", 40, "AAPL", "100", strategy="s2")
    desk.fill("SELL", 30, "MSFT", "50", strategy="s1")
    desk.fill("BUY", 20, "IBM", "120", strategy="s2")
    desk.buy(10, "AAPL", "s1", limit="90")
    desk.sell(10, "AAPL", "s2", limit="110")
    desk.buy(5, "MSFT", "s1", limit="45")
    desk.sell(5, "IBM", "s2", limit="130")
    desk.buy(1, "IBM", "s1", stop="125")
    seen: list[Event] = []
    desk.kernel.bus.subscribe(seen.append)
    return desk, modes, seen


def test_halt_cancels_every_open_order_at_the_broker_and_denies_new_orders_but_not_cancels():
    desk, modes, seen = desk_with_book()
    open_ids = [o.order_id for o in desk.state.open_orders()]
    assert len(open_ids) == 5 and desk.broker.working_count == 5
    assert {o.symbol for o in desk.state.open_orders()} == {"AAPL", "MSFT", "IBM"}

    summary = halt(desk.kernel, modes, reason="runaway market", actor="bob")

    assert desk.broker.working_count == 0 and desk.state.open_orders() == []
    change = TradingModeChanged(desk.clock.now, ACCOUNT, "ACTIVE", "HALTED", "kill switch: runaway market", "bob")
    assert summary == HaltSummary(change, tuple(open_ids), tuple(open_ids), (), (), ())
    assert summary.cancels_unconfirmed == ()
    # the record: the halt first, then a request and a broker confirmation per order
    assert seen[0] == change
    assert [(type(e), e.order_id) for e in seen[1:]] == [
        (cls, oid) for oid in open_ids for cls in (OrderCancelRequested, OrderCanceled)
    ]
    assert modes.account is M.HALTED
    assert denied(desk.buy(1, "AAPL")) == "account mode HALTED: new orders are denied (kill switch: runaway market)"
    # a strategy cannot tag its way through: the tag counts only while the switch is flattening
    tagged = desk.kernel.submit_order("s1", "AAPL", OrderSide.SELL, 100, tags=FLATTEN_TAG)
    assert desk.kernel.order(tagged).status is OrderStatus.DENIED
    # positions untouched without flatten
    assert desk.state.position("s1", "AAPL") == 100 and desk.state.position("s2", "IBM") == 20


def test_halt_with_flatten_closes_every_strategy_position_and_cancels_still_pass():
    desk, modes, _ = desk_with_book()
    summary = halt(desk.kernel, modes, reason="desk emergency", actor="bob", flatten=True)
    assert len(summary.cancels_confirmed) == 5 and summary.flatten_denied == ()
    flat = [desk.kernel.order(oid) for oid in summary.flatten_orders]
    assert sorted((o.strategy_id, o.symbol, o.side.value, o.quantity, o.order_type, o.tags) for o in flat) == [
        ("s1", "AAPL", "SELL", D(100), OrderType.MARKET, FLATTEN_TAG),
        ("s1", "MSFT", "BUY", D(30), OrderType.MARKET, FLATTEN_TAG),
        ("s2", "AAPL", "BUY", D(40), OrderType.MARKET, FLATTEN_TAG),
        ("s2", "IBM", "SELL", D(20), OrderType.MARKET, FLATTEN_TAG),
    ]
    assert desk.broker.working_count == 4
    # while halted a cancel is accepted: take one flattening order back, then let the rest fill
    ibm = next(o for o in flat if o.symbol == "IBM")
    desk.kernel.cancel_order(ibm.order_id)
    assert ibm.status is OrderStatus.CANCELED and desk.broker.working_count == 3
    desk.clock.now += 60_000_000_000  # the flattening orders fill on the next bars (no look-ahead)
    for sym, px in PRICES.items():
        desk.bar(sym, px)
    assert {k: p.quantity for k, p in desk.state.positions.items() if p.quantity} == {("s2", "IBM"): D(20)}
    assert modes.account is M.HALTED and not modes.unwinding


def test_flatten_orders_still_meet_the_inner_risk_engine():
    desk, modes, _ = desk_with_book()
    desk.risk.set_limits({"account": {"max_order_quantity": "50"}}, actor="alice", ts=desk.clock.now)
    summary = halt(desk.kernel, modes, reason="stop", actor="bob", flatten=True)
    assert len(summary.flatten_orders) == 3
    ((oid, reason),) = summary.flatten_denied
    order = desk.kernel.order(oid)
    assert (order.strategy_id, order.symbol, order.quantity) == ("s1", "AAPL", D(100))
    assert reason.startswith("max_order_quantity") and reason == order.reason


def test_halting_an_already_halted_account_still_cancels_and_records_no_second_change():
    desk, modes, _ = desk_with_book()
    modes.set_mode(ACCOUNT, M.HALTED, reason="monitor", actor="risk-monitor")
    summary = halt(desk.kernel, modes, reason="again", actor="bob")
    assert summary.mode_change is None and len(summary.cancels_confirmed) == 5
    assert modes.reason() == "monitor"


def test_resume_trading_needs_an_authorised_user():
    desk, modes, _ = desk_with_book()
    halt(desk.kernel, modes, reason="x", actor="bob")
    with pytest.raises(NotAuthorisedError, match="actor 'bob' is not authorised to resume trading of account"):
        resume_trading(modes, "bob", "all clear")
    assert modes.account is M.HALTED
    event = resume_trading(modes, "alice", "all clear")
    assert (event.old, event.new, event.reason, event.actor) == ("HALTED", "ACTIVE", "all clear", "alice")
    assert passed(desk.buy(1, "AAPL"))


def test_halt_refuses_a_kernel_without_a_mode_gate_before_doing_anything():
    desk = Desk({}, prices=PRICES)
    modes = TradingModes.for_kernel(desk.kernel, ModeConfig(frozenset({"alice"})))
    order = desk.buy(1, "AAPL", limit="90")
    with pytest.raises(ValueError, match="does not enforce these trading modes"):
        halt(desk.kernel, modes, reason="x", actor="bob")
    with pytest.raises(ValueError, match="a reason is required"):
        halt(desk.kernel, modes, reason="", actor="bob")
    assert order.is_open and modes.account is M.ACTIVE
    # a gate over other modes does not count either
    desk.kernel.risk = ModeGate(TradingModes.for_kernel(desk.kernel), desk.risk)
    with pytest.raises(ValueError, match="does not enforce these trading modes"):
        halt(desk.kernel, modes, reason="x", actor="bob")
