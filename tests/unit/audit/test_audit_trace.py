"""Recording a real backtest on the audit log, and tracing an order: strategy -> checks -> fills -> P&L."""
from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest
from typer.testing import CliRunner

from qlcore.audit import AuditLog, AuditRecorder, trace, trace_events
from qlcore.audit.cli import audit_app
from qlcore.brokers.simulated import SimulatedBroker
from qlcore.engine import BacktestConfig, BacktestEngine, Kernel
from qlcore.engine.clock import BacktestClock
from qlcore.events import EventStore
from qlcore.model.enums import OrderSide, OrderType
from qlcore.model.instruments import Instrument
from qlcore.risk import RiskEngine
from qlcore.strategies import Strategy

D = Decimal


class RoundTrip(Strategy):
    """Bar 0: buy 10. Bar 1: buy 500 (over the limit). Bar 2: sell 10. Bar 3: sell 5 (short: denied)."""

    name = "round_trip"

    def on_bar(self, bar) -> None:
        i = getattr(self, "i", -1) + 1
        self.i = i
        if i == 0:
            self.buy(10)
        elif i == 1:
            self.buy(500)
        elif i == 2:
            self.sell(10)
        elif i == 3:
            self.sell(5)


def bars() -> pd.DataFrame:
    closes = [100.0, 101.0, 104.0, 103.0, 102.0]
    idx = pd.date_range("2024-03-04", periods=len(closes), freq="D", name="ts")
    df = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes, "volume": 1e3}, index=idx)
    df.attrs["symbol"] = "ACME"
    return df


@pytest.fixture
def recorded_run(store_url):
    store = EventStore(store_url)
    log = AuditLog(store_url, batch_size=50)
    recorder = AuditRecorder(log)
    risk = RiskEngine({"account": {"max_order_quantity": 100, "allow_short": False, "calendar": "XNYS",
                                   "calendar_mode": "date"}})
    recorder.watch(risk)
    engine = BacktestEngine(BacktestConfig(fee_bps=10), store=store, risk=risk)
    engine.add_strategy(risk.price_feed())
    engine.add_strategy(recorder.watcher())
    engine.add_strategy(RoundTrip(strategy_id="rt"))
    result = engine.run(bars())
    return store_url, store, log, result


def test_trace_lists_checks_fills_and_pnl_of_a_backtest_order(recorded_run):
    _, _, log, result = recorded_run
    assert log.verify().ok
    (buy,) = trace(log, "O-1")
    assert buy.stream == result.run_id and buy.strategy_id == "rt"
    assert buy.checks == [{"ts": buy.order.ts_init, "passed": True, "rules": ["trading_hours", "max_order_quantity", "short_sale"],
                           "reason": ""}]
    assert buy.order.status.value == "FILLED"
    (fill,) = buy.fills
    assert (fill.quantity, fill.price, fill.fee, fill.realized_pnl, fill.position_after) == (
        D(10), D("101.0"), D("1.010"), D(0), D(10)
    )
    (sell,) = trace(log, "O-3")
    (sfill,) = sell.fills
    assert sfill.price == D("103.0") and sfill.position_after == 0
    assert sell.realized_pnl == D(20)  # (103 - 101) x 10, gross of fees
    assert sell.fees == D("1.030")
    text = sell.render()
    assert "strategy rt: ACME SELL 10 MARKET" in text
    assert "risk.passed" in text and "3 rules passed: trading_hours, max_order_quantity, short_sale" in text
    assert "-> FILLED: filled 10 @ avg 103.0, fees 1.03, realized P&L 20.00" in text


def test_trace_of_denied_orders_gives_rule_limit_and_value(recorded_run):
    _, _, log, _ = recorded_run
    (big,) = trace(log, "O-2")
    assert big.order.status.value == "DENIED" and big.fills == []
    assert big.checks[0]["passed"] is False
    assert big.checks[0]["rules"] == ["trading_hours", "max_order_quantity"]
    assert big.checks[0]["reason"].startswith("max_order_quantity: limit 100, order 500")
    (short,) = trace(log, "O-4")
    assert short.checks[0]["reason"].startswith("short_sale: limit position >= 0 (shorting not allowed), would be -5")


def test_every_order_event_and_decision_is_on_the_log(recorded_run):
    _, store, log, result = recorded_run
    actions = [e.action for e in log.entries()]
    assert actions.count("risk.passed") == 2 and actions.count("risk.denied") == 2
    assert actions.count("order.initialized") == 4 and actions.count("order.denied") == 2
    assert actions.count("order.filled") == 2 and actions[-1] == "run.finished"
    stored_order_events = [e for e in store.events(result.run_id) if hasattr(e, "order_id")]
    assert len([a for a in actions if a.startswith("order.")]) == len(stored_order_events)


def test_trace_from_the_event_store_when_not_in_the_audit_log(recorded_run):
    _, store, _, result = recorded_run
    lin = trace_events(store, result.run_id, "O-3")
    assert lin is not None and lin.source == "event store"
    assert lin.realized_pnl == D(20) and lin.order.status.value == "FILLED"
    denied = trace_events(store, result.run_id, "O-2")
    assert denied.checks[0]["reason"].startswith("max_order_quantity: limit 100")
    assert trace_events(store, result.run_id, "O-99") is None


def test_cli_trace_prints_the_lineage(recorded_run):
    url, _, _, result = recorded_run
    out = CliRunner().invoke(audit_app, ["trace", "O-3", "--db", url])
    assert out.exit_code == 0, out.output
    assert f"order O-3 (run {result.run_id}), from the audit log" in out.output
    assert "realized P&L 20.00" in out.output
    missing = CliRunner().invoke(audit_app, ["trace", "O-77", "--db", url])
    assert missing.exit_code == 2 and "order O-77 not found" in missing.output


def test_commands_and_limit_changes_are_recorded_with_their_user(sqlite_url):
    log = AuditLog(sqlite_url)
    clock = BacktestClock(pd.Timestamp("2024-03-04 15:00", tz="UTC").value)
    risk = RiskEngine({"account": {"max_order_quantity": 100}})
    kernel = Kernel(clock=clock, broker=SimulatedBroker(), instruments={"ACME": Instrument("ACME")}, risk=risk)
    recorder = AuditRecorder(log, stream="paper-1")
    recorder.attach(kernel)
    recorder.watch(risk)
    oid = kernel.submit_order("s1", "ACME", OrderSide.BUY, 5, OrderType.LIMIT, "10.00")
    recorder.record_command("alice", "cancel", {"order_id": oid}, "accepted", ts=clock.now)
    kernel.cancel_order(oid)
    recorder.record_command("bob", "halt", {"reason": "test"}, "refused: not authorised", ts=clock.now)
    risk.set_limits({"account": {"max_order_quantity": 1}}, actor="user:carol", ts=clock.now, reason="tighten")
    entries = log.entries()
    cancel = next(e for e in entries if e.action == "command.cancel")
    assert (cancel.actor, cancel.subject, cancel.data) == (
        "user:alice", f"paper-1/{oid}", {"params": {"order_id": oid}, "outcome": "accepted"}
    )
    halt = next(e for e in entries if e.action == "command.halt")
    assert halt.actor == "user:bob" and halt.data["outcome"] == "refused: not authorised"
    change = entries[-1]
    assert (change.actor, change.action, change.data["reason"]) == ("user:carol", "risk.limits_changed", "tighten")
    assert change.data["config"] == {"account": {"max_order_quantity": "1"}}
    (lin,) = trace(log, oid)
    assert [s[1] for s in lin.steps] == [
        "order.initialized", "risk.passed", "order.submitted", "order.accepted", "command.cancel",
        "order.cancel_requested", "order.canceled",
    ]
    assert lin.order.status.value == "CANCELED"
    assert log.verify().ok
