"""Commands through the command table into a paper engine: outcomes, the kill switch, bad input."""
from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from signed import job_signer, signer

from qlcore.control.commands import CommandQueue
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.engine.status import read_status
from qlcore.events.facts import CommandCompleted, TradingModeChanged
from qlcore.events.store import EventStore
from qlcore.model.enums import OrderStatus

TARGET = "t"


@pytest.fixture
def rig(sqlite_url: str, tmp_path: Path):
    risk = tmp_path / "risk.toml"
    risk.write_text('[modes]\nauthorised = ["risk-officer"]\n')
    engine = EngineService(
        EngineConfig(
            engine_id=TARGET, url=sqlite_url, venue_path=tmp_path / "venue.sqlite", symbols=("AAPL", "MSFT", "IBM"),
            speed=1000.0, risk_config=risk, command_poll_s=0.0,
        )
    )
    engine.start()
    queue = CommandQueue(sqlite_url, signer=signer())
    yield engine, queue
    engine.shutdown()


def _send(engine: EngineService, queue: CommandQueue, user: str, kind: str, payload: dict, turns: int = 1):
    cid = queue.submit(user, kind, payload, target=TARGET)
    for _ in range(turns):
        engine.step()
    return queue.status(cid)


def _limit(symbol: str, side: str, price: str, qty: str = "10") -> dict:
    return {"strategy_id": "desk", "symbol": symbol, "side": side, "quantity": qty, "order_type": "LIMIT", "price": price}


def test_kill_switch_cancels_everything_denies_new_orders_and_lets_cancels_pass(rig):
    engine, queue = rig
    for _ in range(3):
        engine.step()  # first bars: marks for every symbol
    for sym in ("AAPL", "MSFT", "IBM"):
        assert _send(engine, queue, "trader", "order.submit", _limit(sym, "BUY", "0.01")).status == "accepted"
        assert _send(engine, queue, "trader", "order.submit", _limit(sym, "SELL", "100000")).status == "accepted"
    assert engine.venue.working_count == 6

    started = time.monotonic()
    halted = _send(engine, queue, "carol", "halt", {"reason": "fat finger on the desk"})
    while engine.venue.working_count and time.monotonic() - started < 60:  # a bound, not a measure
        engine.step()
    assert halted.status == "accepted" and "6 cancel(s)" in halted.reason
    assert engine.venue.working_count == 0
    assert not engine.kernel.state.open_orders()
    assert all(o.status is OrderStatus.CANCELED for o in engine.kernel.state.orders.values())
    assert engine.trading_mode()[0] == "HALTED" and "fat finger" in engine.trading_mode()[1]

    denied = _send(engine, queue, "trader", "order.submit", _limit("AAPL", "BUY", "0.01"))
    assert denied.status == "refused" and "HALTED" in denied.reason

    # a cancel still passes while halted: an order resting from before the halt is cancelled
    engine.modes.resume("account", "risk-officer", "one more order for the test")
    resting = _send(engine, queue, "trader", "order.submit", _limit("MSFT", "BUY", "0.01"))
    order_id = resting.reason.split()[1]
    engine.modes.restrict("account", engine.modes.mode("account").__class__("HALTED"), reason="again", actor="carol")
    cancel = _send(engine, queue, "trader", "order.cancel", {"order_id": order_id}, turns=2)
    assert cancel.status == "accepted"
    assert engine.kernel.state.orders[order_id].status is OrderStatus.CANCELED

    refused = _send(engine, queue, "mallory", "resume_trading", {"reason": "let me trade"})
    assert refused.status == "refused" and "mallory" in refused.reason
    assert engine.trading_mode()[0] == "HALTED"
    resumed = _send(engine, queue, "risk-officer", "resume_trading", {"reason": "checked"})
    assert resumed.status == "accepted" and engine.trading_mode()[0] == "ACTIVE"

    changes = [(e.old, e.new, e.actor) for e in EventStore(engine.url).events(engine.config.stream) if type(e) is TradingModeChanged]
    assert changes[0] == ("ACTIVE", "HALTED", "carol") and changes[-1] == ("HALTED", "ACTIVE", "risk-officer")


def test_halt_with_flatten_closes_positions(rig):
    engine, queue = rig
    for _ in range(3):
        engine.step()
    assert _send(engine, queue, "trader", "order.submit", {"strategy_id": "desk", "symbol": "AAPL", "side": "BUY", "quantity": "7"}, turns=3).status == "accepted"
    assert engine.kernel.state.position("desk", "AAPL") == Decimal(7)
    done = _send(engine, queue, "carol", "halt", {"reason": "close it all", "flatten": True}, turns=3)
    assert done.status == "accepted" and "1 flatten order(s)" in done.reason
    assert engine.kernel.state.position("desk", "AAPL") == 0
    assert engine.trading_mode()[0] == "HALTED"


@pytest.mark.parametrize(
    ("kind", "payload", "why"),
    [
        ("strategy.deploy", {"strategy_id": "x", "strategy": "no_such_strategy"}, "unknown strategy 'no_such_strategy'"),
        ("strategy.deploy", {"strategy_id": "x", "strategy": "sma_cross", "params": {"fast": "ten"}}, "fast='ten' is not a valid int"),
        ("strategy.deploy", {"strategy_id": "x", "strategy": "sma_cross", "params": {"speed": 3}}, "speed"),
        ("strategy.deploy", {"strategy_id": "x", "strategy": "sma_cross", "symbols": ["TSLA"]}, "unknown symbol(s) TSLA"),
        ("strategy.pause", {"strategy_id": "ghost"}, "no deployed strategy 'ghost'"),
        ("order.cancel", {"order_id": "t-999"}, "unknown order id 't-999'"),
        ("order.submit", {"strategy_id": "d", "symbol": "TSLA", "side": "BUY", "quantity": "1"}, "unknown symbol 'TSLA'"),
        ("limits.set", {"limits": {"account": {"max_order_qty": "5"}}}, "max_order_qty"),
    ],
)
def test_bad_commands_are_refused_with_a_reason_and_the_engine_keeps_running(rig, kind, payload, why):
    engine, queue = rig
    outcome = _send(engine, queue, "alice", kind, payload)
    assert outcome.status == "refused"
    assert why in outcome.reason
    logged = [e for e in EventStore(engine.url).events(engine.config.stream) if type(e) is CommandCompleted]
    assert (logged[-1].command_id, logged[-1].accepted, logged[-1].user) == (outcome.id, False, "alice")
    ok = _send(engine, queue, "alice", "order.submit", {"strategy_id": "d", "symbol": "AAPL", "side": "BUY", "quantity": "1"})
    assert ok.status == "accepted"


def test_lifecycle_through_commands_and_limits_apply_to_the_next_order(rig):
    engine, queue = rig
    deploy = {"strategy_id": "s1", "strategy": "sma_cross", "params": {"fast": 2, "slow": 4}, "symbols": ["AAPL"], "capital": "50000"}
    assert _send(engine, queue, "quant", "strategy.deploy", deploy).status == "accepted"
    assert _send(engine, queue, "quant", "strategy.deploy", deploy).reason == "strategy id 's1' is already deployed"
    assert _send(engine, queue, "dealer", "strategy.pause", {"strategy_id": "s1"}).status == "accepted"
    assert engine.manager.state("s1").value == "PAUSED"
    again = _send(engine, queue, "dealer", "strategy.pause", {"strategy_id": "s1"})
    assert again.status == "refused" and "cannot pause in state PAUSED" in again.reason
    assert _send(engine, queue, "dealer", "strategy.resume", {"strategy_id": "s1"}).status == "accepted"
    assert _send(engine, queue, "dealer", "strategy.stop", {"strategy_id": "s1", "flatten": True}).status == "accepted"
    assert engine.manager.state("s1").value == "STOPPED"

    limits = _send(engine, queue, "admin", "limits.set", {"limits": {"account": {"max_order_quantity": "5"}}, "reason": "tighten"})
    assert limits.status == "accepted"
    over = _send(engine, queue, "dealer", "order.submit", {"strategy_id": "d", "symbol": "AAPL", "side": "BUY", "quantity": "6"})
    assert over.status == "refused" and "max_order_quantity" in over.reason and "5" in over.reason
    at = _send(engine, queue, "dealer", "order.submit", {"strategy_id": "d", "symbol": "AAPL", "side": "BUY", "quantity": "5"})
    assert at.status == "accepted"


def test_commands_reach_an_engine_running_in_its_own_thread(sqlite_url, tmp_path):
    # how fast is measured in benchmarks/bench_engine.py (command path, p99 < 100 ms)
    import threading

    engine = EngineService(EngineConfig(engine_id=TARGET, url=sqlite_url, venue_path=tmp_path / "v.sqlite", speed=5.0))
    engine.start()
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    queue = CommandQueue(sqlite_url, signer=signer())
    try:
        outcomes = []
        for _ in range(10):
            cid = queue.submit("alice", "order.submit", {"strategy_id": "d", "symbol": "AAPL", "side": "BUY", "quantity": "1"}, target=TARGET)
            cmd = queue.wait_for(cid, 60.0, poll_s=0.001)
            outcomes.append((cmd.status, cmd.ts_taken >= cmd.ts_submitted))
        assert outcomes == [("accepted", True)] * 10
    finally:
        engine.stop()
        thread.join(10)


def test_the_audit_trail_has_every_command_with_its_user_and_an_order_s_lineage(rig):
    from qlcore.audit.lineage import trace
    from qlcore.audit.log import AuditLog

    engine, queue = rig
    for _ in range(2):
        engine.step()
    ok = _send(engine, queue, "bob", "order.submit", {"strategy_id": "desk", "symbol": "IBM", "side": "BUY", "quantity": "3"}, turns=2)
    order_id = ok.reason.split()[1]
    bad = _send(engine, queue, "eve", "order.cancel", {"order_id": "nope"})
    assert bad.status == "refused"

    log = AuditLog(engine.url)
    assert log.verify().ok
    commands = [(e.actor, e.action, "refused" in e.data["outcome"]) for e in log.entries() if e.action.startswith("command.")]
    assert ("user:bob", "command.order.submit", False) in commands
    assert ("user:eve", "command.order.cancel", True) in commands
    actions = [e.action for e in log.entries(subject=f"{engine.config.stream}/{order_id}")]
    assert actions[:2] == ["order.initialized", "risk.passed"] and "order.filled" in actions
    lineage = trace(log, order_id)
    assert len(lineage) == 1 and lineage[0].strategy_id == "desk" and len(lineage[0].fills) == 1


def test_an_order_from_a_scheduled_job_carries_the_job_and_the_approved_hash(rig):
    engine, queue = rig
    engine.step()
    payload = {"strategy_id": "rebalance-job", "symbol": "MSFT", "side": "BUY", "quantity": "4",
               "job_id": "daily-rebalance", "code_hash": "ab12cd34"}
    queue.signer = job_signer("daily-rebalance", ["rebalance-job"], ["MSFT"], "ab12cd34")  # the run's own credential
    ok = _send(engine, queue, "job:daily-rebalance", "order.submit", payload)
    order = engine.kernel.state.orders[ok.reason.split()[1]]
    assert order.tags == f"command:{ok.id} job:daily-rebalance hash:ab12cd34"


def test_bad_bars_are_quarantined_in_the_log_and_never_reach_the_strategies(sqlite_url, tmp_path):
    from qlcore.data.feed import Fault, FaultKind, SymbolSeed, SyntheticIntradayFeed
    from qlcore.events.facts import DataGap, DataQuarantined

    seen: list = []
    faults = [
        Fault(FaultKind.SPIKE, 40, "AAA", size=0.5),
        Fault(FaultKind.OHLC, 50, "AAA"),
        Fault(FaultKind.DUPLICATE, 60, "AAA"),
        Fault(FaultKind.OUT_OF_ORDER, 70, "AAA", length=3),
        Fault(FaultKind.GAP, 80, "AAA", length=2),
    ]
    feed = SyntheticIntradayFeed([SymbolSeed("AAA", 100.0, 0.02)], start_ts=1_700_000_000_000_000_000, n_bars=120,
                                 step_seconds=0.0005, faults=faults)
    clean = [b for step in SyntheticIntradayFeed([SymbolSeed("AAA", 100.0, 0.02)], start_ts=1_700_000_000_000_000_000,
                                                n_bars=120).clean_bars() for b in step]
    engine = EngineService(EngineConfig(engine_id=TARGET, url=sqlite_url, venue_path=tmp_path / "v.sqlite", symbols=("AAA",),
                                        feed="synthetic", speed=2000.0, exit_when_done=True), feed=feed)
    engine.start()
    original = engine.manager.on_bar  # what the strategies are handed: every bar the manager gets
    engine.manager.on_bar = lambda bar: (seen.append(bar), original(bar))  # type: ignore[method-assign]
    engine.run()

    events = EventStore(sqlite_url).events(engine.config.stream)
    kinds = sorted({e.kind.value for e in events if type(e) is DataQuarantined})
    assert kinds == ["duplicate", "ohlc", "out_of_order", "spike"]
    assert [e.missing for e in events if type(e) is DataGap] == [2]
    clean_ts = {b.ts for b in clean}
    assert all(b.ts in clean_ts and b == next(c for c in clean if c.ts == b.ts) for b in seen if b.ts != clean[40].ts)
    assert len({b.ts for b in seen}) == len(seen)  # no duplicate and nothing out of order reached them
    assert [b.ts for b in seen] == sorted(b.ts for b in seen)


def test_limit_changes_merge_into_the_limits_in_force(rig):
    engine, queue = rig
    engine.step()
    order = {"symbol": "AAPL", "side": "BUY"}
    assert _send(engine, queue, "admin", "limits.set", {"limits": {"account": {"max_order_quantity": "50"}}}).status == "accepted"
    assert _send(engine, queue, "admin", "limits.set", {"limits": {"max_order_quantity": "3"}, "strategy_id": "tight"}).status == "accepted"
    assert _send(engine, queue, "admin", "limits.set", {"limits": {"account": {"max_open_orders": 100}}}).status == "accepted"
    config = engine.risk.config
    assert str(config.account.max_order_quantity) == "50" and str(config.strategies["tight"].max_order_quantity) == "3"
    assert _send(engine, queue, "d", "order.submit", {**order, "strategy_id": "tight", "quantity": "4"}).status == "refused"
    assert _send(engine, queue, "d", "order.submit", {**order, "strategy_id": "loose", "quantity": "50"}).status == "accepted"
    assert _send(engine, queue, "d", "order.submit", {**order, "strategy_id": "loose", "quantity": "51"}).status == "refused"


def test_a_feed_faster_than_the_engine_is_caught_up_a_bounded_batch_a_turn_with_an_alert(sqlite_url, tmp_path):
    from qlcore.data.feed import ManualClock, SymbolSeed, SyntheticIntradayFeed

    t0 = 1_700_000_000_000_000_000
    clock = ManualClock(t0)
    feed = SyntheticIntradayFeed([SymbolSeed("AAA", 100.0, 0.02)], start_ts=t0, n_bars=2_000, step_seconds=0.01,
                                 clock=clock)
    engine = EngineService(EngineConfig(engine_id=TARGET, url=sqlite_url, venue_path=tmp_path / "v.sqlite", symbols=("AAA",),
                                        feed="synthetic", max_feed_steps_per_turn=100, heartbeat_s=0.0), feed=feed)
    engine.start()
    clock.advance(15.0)  # 1,500 steps are due at once: the engine is 15 s behind
    engine.step()
    assert engine.counters.bars == 100  # one turn takes a bounded batch: commands are not kept waiting
    assert any(a["source"] == "feed" and "behind the feed" in a["message"] for a in engine.alerts)
    assert read_status(sqlite_url, TARGET)[0].snapshot["feed"]["behind_s"] > 10
    while engine.counters.bars < 1_500:
        assert engine.step()
    assert engine.feed_behind_s() == 0.0
    assert engine.alerts[-1]["message"] == "the engine has caught up with the feed"
    engine.shutdown()
