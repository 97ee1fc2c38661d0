"""Protective commands jump the engine's queue without changing what their senders meant: a real
paper engine on a SQLite file, commands through the command table, outcomes read from the event log."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from signed import signer

from qlcore.control.commands import CommandLimits, CommandQueue
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.events.facts import CommandCompleted
from qlcore.events.store import EventStore
from qlcore.events.types import OrderInitialized

TARGET = "p"


def _config(url: str, tmp_path: Path, **kw) -> EngineConfig:
    risk = tmp_path / "risk.toml"
    risk.write_text('[modes]\nauthorised = ["risk-officer"]\n')
    return EngineConfig(engine_id=TARGET, url=url, venue_path=tmp_path / "venue.sqlite", symbols=("AAPL", "MSFT"),
                        speed=1000.0, risk_config=risk, command_poll_s=0.0, **kw)


@pytest.fixture
def rig(sqlite_url: str, tmp_path: Path):
    engine = EngineService(_config(sqlite_url, tmp_path))
    engine.start()
    for _ in range(3):
        engine.step()  # first bars: marks for every symbol
    yield engine, CommandQueue(sqlite_url, signer=signer(), limits=CommandLimits(max_pending=0, max_per_s=0))
    engine.shutdown()


def _order(symbol: str = "AAPL", strategy_id: str = "desk", qty: str = "1") -> dict:
    return {"strategy_id": strategy_id, "symbol": symbol, "side": "BUY", "quantity": qty}


def _completions(engine: EngineService) -> dict[int, tuple[int, CommandCompleted]]:
    """command id -> (sequence number in the log, its completion)."""
    return {e.command_id: (seq, e) for seq, e in EventStore(engine.url).iter_events(engine.config.stream)
            if type(e) is CommandCompleted}


def test_a_halt_sent_behind_orders_is_handled_in_a_turn_of_its_own_and_they_are_denied(rig):
    engine, queue = rig
    before = [queue.submit("flood", "order.submit", _order(), target=TARGET) for _ in range(20)]
    halt = queue.submit("carol", "halt", {"reason": "flood"}, target=TARGET)
    after = queue.submit("flood", "order.submit", _order(), target=TARGET)
    orders_before = len(engine.kernel.state.orders)
    engine.step()  # a turn of its own for the halt
    assert queue.status(halt).status == "accepted" and all(queue.status(c).status == "pending" for c in before)
    engine.step()  # then the orders

    done = _completions(engine)
    assert done[halt][1].accepted and min(done[c][0] for c in (*before, after)) > done[halt][0]
    for cid in (*before, after):
        assert not done[cid][1].accepted and "account mode HALTED" in done[cid][1].reason
    # the orders were denied by the risk chain: created and denied, never sent
    assert all(o.status.value == "DENIED" for o in list(engine.kernel.state.orders.values())[orders_before:])


def test_a_halt_sent_while_a_page_of_orders_is_handled_stops_the_page_and_the_rest_are_denied(rig):
    engine, queue = rig
    orders = [queue.submit("flood", "order.submit", _order(), target=TARGET) for _ in range(30)]
    handle = engine.handlers.handle
    halt: list[int] = []

    def handle_and_pull_the_switch(command):
        if command.id == orders[3]:  # the desk pulls the switch while the engine works on the page
            halt.append(queue.submit("carol", "halt", {"reason": "mid-page"}, target=TARGET))
        return handle(command)

    engine.handlers.handle = handle_and_pull_the_switch
    engine.step()
    # the page stopped at the first look after the halt came: the rest went back, still in their place
    assert [queue.status(c).status for c in orders[:10]] == ["accepted"] * 10
    assert {queue.status(c).status for c in orders[10:]} == {"pending"}
    assert [c.id for c in queue.pending(TARGET, limit=100)] == [*orders[10:], halt[0]]
    engine.step()
    engine.step()
    done = _completions(engine)
    assert done[halt[0]][1].accepted
    assert all(done[c][0] < done[halt[0]][0] < done[d][0] for c in orders[:10] for d in orders[10:])
    assert all(not done[c][1].accepted and "HALTED" in done[c][1].reason for c in orders[10:])


def test_a_resume_sent_before_a_halt_cannot_undo_it(rig):
    engine, queue = rig
    resume = queue.submit("risk-officer", "resume_trading", {"reason": "all clear"}, target=TARGET)
    order = queue.submit("flood", "order.submit", _order(), target=TARGET)
    halt = queue.submit("carol", "halt", {"reason": "stop now"}, target=TARGET)
    engine.step()
    engine.step()
    done = _completions(engine)
    assert done[halt][1].accepted and engine.trading_mode()[0] == "HALTED"
    assert not done[resume][1].accepted and f"superseded by command {halt} (halt" in done[resume][1].reason
    assert not done[order][1].accepted and "HALTED" in done[order][1].reason
    # a resume sent after the halt is heard
    later = queue.submit("risk-officer", "resume_trading", {"reason": "checked"}, target=TARGET)
    engine.step()
    assert _completions(engine)[later][1].accepted and engine.trading_mode()[0] == "ACTIVE"


def test_a_stop_sent_right_after_a_deploy_leaves_no_strategy_running(rig):
    engine, queue = rig
    deploy = queue.submit("quant", "strategy.deploy", {"strategy_id": "s1", "strategy": "sma_cross",
                                                       "params": {"fast": 2, "slow": 4}, "symbols": ["AAPL"]}, target=TARGET)
    order = queue.submit("quant", "order.submit", _order(strategy_id="s1"), target=TARGET)
    stop = queue.submit("dealer", "strategy.stop", {"strategy_id": "s1"}, target=TARGET)
    engine.step()
    engine.step()
    done = _completions(engine)
    assert done[stop][0] < done[deploy][0] < done[order][0]
    assert not done[deploy][1].accepted and f"superseded by command {stop} (strategy.stop of strategy s1" in done[deploy][1].reason
    assert not done[order][1].accepted and "superseded" in done[order][1].reason
    assert "s1" not in engine.manager.strategy_ids
    assert not [e for e in EventStore(engine.url).events(engine.config.stream)
                if type(e) is OrderInitialized and e.strategy_id == "s1"]


def test_a_flatten_supersedes_orders_sent_before_it_in_its_scope_only(rig):
    engine, queue = rig
    queue.submit("dealer", "order.submit", _order(qty="5"), target=TARGET)
    queue.submit("dealer", "order.submit", _order("MSFT", qty="3"), target=TARGET)
    for _ in range(3):
        engine.step()
    assert engine.kernel.state.position("desk", "AAPL") == Decimal(5)
    more_aapl = queue.submit("dealer", "order.submit", _order(qty="2"), target=TARGET)
    more_msft = queue.submit("dealer", "order.submit", _order("MSFT", qty="2"), target=TARGET)
    flatten = queue.submit("dealer", "flatten", {"symbol": "AAPL"}, target=TARGET)
    for _ in range(3):
        engine.step()
    done = _completions(engine)
    assert done[flatten][1].accepted and done[flatten][0] < done[more_aapl][0]
    assert not done[more_aapl][1].accepted and f"superseded by command {flatten} (flatten of AAPL" in done[more_aapl][1].reason
    assert done[more_msft][1].accepted
    assert engine.kernel.state.position("desk", "AAPL") == 0
    assert engine.kernel.state.position("desk", "MSFT") == Decimal(5)


def test_a_restarted_engine_still_refuses_a_resume_sent_before_a_pause_it_handled(sqlite_url, tmp_path):
    queue = CommandQueue(sqlite_url, signer=signer(), limits=CommandLimits(max_pending=0, max_per_s=0))
    first = EngineService(_config(sqlite_url, tmp_path))
    first.start()
    deploy = queue.submit("quant", "strategy.deploy", {"strategy_id": "s1", "strategy": "sma_cross",
                                                       "params": {"fast": 2, "slow": 4}, "symbols": ["AAPL"]}, target=TARGET)
    first.step()
    assert _completions(first)[deploy][1].accepted
    resume = queue.submit("quant", "strategy.resume", {"strategy_id": "s1"}, target=TARGET)
    pause = queue.submit("dealer", "strategy.pause", {"strategy_id": "s1"}, target=TARGET)
    first.step()  # a turn for the pause alone; the resume is still waiting when the engine stops
    assert queue.status(pause).status == "accepted" and queue.status(resume).status == "pending"
    first.shutdown()

    second = EngineService(_config(sqlite_url, tmp_path))
    second.start()
    try:
        second.step()
        outcome = queue.status(resume)
        assert outcome.status == "refused" and f"superseded by command {pause}" in outcome.reason
        assert second.manager.state("s1").value == "PAUSED"
    finally:
        second.shutdown()
