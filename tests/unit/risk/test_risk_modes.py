"""Trading modes: the transition table, authorised resumes, and the gate in front of the risk engine."""
from __future__ import annotations

from decimal import Decimal

import pytest
from risk_desk import Desk, denied, passed

from qlcore.events.facts import TradingModeChanged
from qlcore.events.store import EventStore
from qlcore.events.types import Event
from qlcore.model.enums import OrderStatus
from qlcore.risk.modes import (
    ACCOUNT,
    TRANSITIONS,
    ModeConfig,
    ModeError,
    ModeGate,
    NotAuthorisedError,
    TradingMode,
    TradingModes,
)

M = TradingMode
D = Decimal


def gated(config: dict | None = None, **kw) -> tuple[Desk, TradingModes, list[Event]]:
    """A desk whose kernel checks orders through ModeGate(modes, RiskEngine); events seen on the bus."""
    desk = Desk(config or {}, **kw)
    modes = TradingModes.for_kernel(desk.kernel, ModeConfig(frozenset({"alice"})))
    desk.kernel.risk = ModeGate(modes, desk.risk)
    seen: list[Event] = []
    desk.kernel.bus.subscribe(seen.append)
    return desk, modes, seen


def mode_events(seen: list[Event]) -> list[tuple]:
    return [(e.scope, e.old, e.new, e.actor) for e in seen if isinstance(e, TradingModeChanged)]


# --- the table and the authorised set ------------------------------------------------------------
def test_transition_table_has_exactly_the_mode_edges_and_only_loosening_needs_a_user():
    assert TRANSITIONS == {
        (M.ACTIVE, M.REDUCING): False,
        (M.ACTIVE, M.HALTED): False,
        (M.REDUCING, M.HALTED): False,
        (M.REDUCING, M.ACTIVE): True,
        (M.HALTED, M.ACTIVE): True,
        (M.HALTED, M.REDUCING): True,
    }


def test_every_change_is_an_event_with_reason_and_actor_and_the_mode_follows():
    desk, modes, seen = gated()
    desk.clock.now += 5
    event = modes.set_mode(ACCOUNT, M.REDUCING, reason="desk review", actor="bob")
    assert event == TradingModeChanged(desk.clock.now, ACCOUNT, "ACTIVE", "REDUCING", "desk review", "bob")
    assert seen == [event]
    assert modes.account is M.REDUCING and modes.reason() == "desk review"
    modes.set_mode("s1", "HALTED", reason="manual", actor="bob")
    assert modes.mode("s1") is M.HALTED and modes.mode("s2") is M.ACTIVE
    assert mode_events(seen) == [(ACCOUNT, "ACTIVE", "REDUCING", "bob"), ("s1", "ACTIVE", "HALTED", "bob")]


def test_an_automatic_cause_lifts_only_its_own_restriction_while_it_is_the_last_change():
    _, modes, seen = gated()
    modes.restrict(ACCOUNT, M.REDUCING, reason="feed down", actor="feed-watch")
    assert modes.cause() == "feed-watch"
    assert modes.lift(ACCOUNT, actor="drawdown-monitor", reason="x") is None  # not its restriction
    lifted = modes.lift(ACCOUNT, actor="feed-watch", reason="feed delivers again")
    assert lifted is not None and modes.account is M.ACTIVE
    modes.restrict(ACCOUNT, M.REDUCING, reason="feed down", actor="feed-watch")
    modes.restrict(ACCOUNT, M.HALTED, reason="drawdown", actor="monitor")  # someone else came after it
    assert modes.lift(ACCOUNT, actor="feed-watch", reason="feed delivers again") is None
    assert modes.account is M.HALTED
    assert modes.lift("s1", actor="feed-watch", reason="x") is None  # ACTIVE already
    assert mode_events(seen) == [
        (ACCOUNT, "ACTIVE", "REDUCING", "feed-watch"), (ACCOUNT, "REDUCING", "ACTIVE", "feed-watch"),
        (ACCOUNT, "ACTIVE", "REDUCING", "feed-watch"), (ACCOUNT, "REDUCING", "HALTED", "monitor"),
    ]
    rebuilt = TradingModes(lambda e: None, modes.clock).replay(seen)  # a restart knows the cause too
    assert (rebuilt.account, rebuilt.cause()) == (M.HALTED, "monitor")


def test_a_change_outside_the_table_is_refused_naming_scope_and_modes():
    _, modes, seen = gated()
    with pytest.raises(ModeError, match=r"account: cannot go from ACTIVE to ACTIVE; allowed: HALTED, REDUCING"):
        modes.set_mode(ACCOUNT, M.ACTIVE, reason="x", actor="alice")
    with pytest.raises(ModeError, match=r"unknown trading mode 'PAUSED'"):
        modes.set_mode(ACCOUNT, "PAUSED", reason="x", actor="alice")
    with pytest.raises(ModeError, match="needs a reason"):
        modes.set_mode(ACCOUNT, M.HALTED, reason="", actor="alice")
    assert seen == [] and modes.account is M.ACTIVE


def test_resume_refuses_an_actor_outside_the_configured_set_and_accepts_one_inside():
    _, modes, seen = gated()
    modes.set_mode(ACCOUNT, M.HALTED, reason="breach", actor="risk-monitor")
    with pytest.raises(NotAuthorisedError, match=r"actor 'mallory' is not authorised .*authorised users: alice"):
        modes.resume(ACCOUNT, "mallory")
    # loosening by the table's other path needs a user as well
    with pytest.raises(NotAuthorisedError, match="'risk-monitor'"):
        modes.set_mode(ACCOUNT, M.REDUCING, reason="unwind", actor="risk-monitor")
    assert modes.account is M.HALTED
    event = modes.resume(ACCOUNT, "alice", "checked the book")
    assert (event.old, event.new, event.reason, event.actor) == ("HALTED", "ACTIVE", "checked the book", "alice")
    assert modes.account is M.ACTIVE
    assert len(mode_events(seen)) == 2


def test_restrict_only_tightens():
    _, modes, _ = gated()
    assert modes.restrict(ACCOUNT, M.HALTED, reason="a", actor="m") is not None
    assert modes.restrict(ACCOUNT, M.REDUCING, reason="b", actor="m") is None
    assert modes.restrict(ACCOUNT, M.HALTED, reason="c", actor="m") is None
    assert modes.account is M.HALTED and modes.reason() == "a"


def test_a_failing_record_leaves_the_mode_unchanged():
    desk = Desk({})

    def broken(event: Event) -> None:
        raise OSError("disk full")

    modes = TradingModes(broken, desk.clock, ModeConfig(frozenset({"alice"})))
    with pytest.raises(OSError):
        modes.set_mode(ACCOUNT, M.HALTED, reason="x", actor="alice")
    assert modes.account is M.ACTIVE


def test_modes_are_a_fold_over_the_stored_events(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'modes.db'}")
    desk = Desk({})
    with store.writer("acct") as writer:
        desk.kernel.writer = writer
        modes = TradingModes.for_kernel(desk.kernel, ModeConfig(frozenset({"alice"})))
        modes.set_mode("s1", M.REDUCING, reason="dd", actor="risk-monitor")
        modes.set_mode(ACCOUNT, M.HALTED, reason="kill", actor="bob")
        modes.resume("s1", "alice")
    rebuilt = TradingModes(desk.kernel.emit, desk.clock).replay(store.events("acct"))
    assert rebuilt.modes == modes.modes == {ACCOUNT: M.HALTED}
    assert rebuilt.reason(ACCOUNT) == "kill"


def test_mode_config_reads_the_modes_table_and_names_unknown_keys():
    cfg = ModeConfig.from_toml('[modes]\nauthorised = ["alice", "bob"]\n[other]\nx = 1\n')
    assert cfg.authorised == frozenset({"alice", "bob"})
    with pytest.raises(ModeError, match=r"unknown key\(s\) \['users'\]"):
        ModeConfig.from_toml('[modes]\nusers = ["alice"]\n')
    with pytest.raises(ModeError, match="expected a list"):
        ModeConfig.from_mapping({"authorised": "alice"})


# --- the gate --------------------------------------------------------------------------------------
def test_halted_account_denies_every_new_order_with_scope_mode_and_reason_but_cancels_pass():
    desk, modes, _ = gated()
    resting = desk.buy(10, limit="90")
    modes.set_mode(ACCOUNT, M.HALTED, reason="operator stop", actor="bob")
    assert denied(desk.buy(1)) == "account mode HALTED: new orders are denied (operator stop)"
    assert denied(desk.sell(1)).startswith("account mode HALTED")
    desk.kernel.cancel_order(resting.order_id)
    assert resting.status is OrderStatus.CANCELED


def test_halted_strategy_is_denied_while_another_strategy_trades():
    desk, modes, _ = gated()
    modes.set_mode("s1", M.HALTED, reason="runaway", actor="guard")
    assert denied(desk.buy(1, strategy="s1")) == "strategy s1 mode HALTED: new orders are denied (runaway)"
    assert passed(desk.buy(1, strategy="s2"))


def test_reducing_strategy_lets_a_reducing_order_through_and_denies_increasing_and_flipping_ones():
    desk, modes, _ = gated()
    desk.fill("BUY", 100)
    modes.set_mode("s1", M.REDUCING, reason="drawdown", actor="risk-monitor")
    assert denied(desk.buy(1)) == (
        "strategy s1 mode REDUCING: only orders that reduce the position pass; "
        "BUY 1 AAPL would increase strategy s1's position in AAPL 100 -> 101 (drawdown)"
    )
    assert "SELL 150 AAPL would flip strategy s1's position in AAPL 100 -> -50" in denied(desk.sell(150))
    assert denied(desk.sell(10, symbol="MSFT")).endswith("would increase strategy s1's position in MSFT 0 -> -10 (drawdown)")
    first = desk.sell(60, limit="101")
    assert passed(first)
    # the open sell counts: another 60 would take the position through zero
    assert "SELL 60 AAPL with 60 already open on that side would flip" in denied(desk.sell(60))
    assert passed(desk.sell(40))  # exactly to zero
    # the open order ends: its quantity no longer counts
    desk.kernel.cancel_order(first.order_id)
    assert passed(desk.sell(60, limit="102"))


def test_reducing_account_judges_the_net_position_of_all_strategies():
    desk, modes, _ = gated()
    desk.fill("BUY", 100, strategy="s1")
    desk.fill("SELL", 30, strategy="s2")
    modes.set_mode(ACCOUNT, M.REDUCING, reason="exposure", actor="risk-monitor")
    # s2 covering its short would raise the account's net long: not reducing at account level
    assert "would increase the account's net position in AAPL 70 -> 80" in denied(desk.buy(10, strategy="s2"))
    assert passed(desk.sell(70, strategy="s1"))
    assert "would flip the account's net position in AAPL 70 -> -1" in denied(desk.sell(1, strategy="s1"))


def test_the_inner_hook_still_decides_after_the_gate():
    desk, modes, _ = gated({"account": {"max_order_quantity": "50"}})
    desk.fill("BUY", 50)
    desk.fill("BUY", 50)
    modes.set_mode(ACCOUNT, M.REDUCING, reason="x", actor="m")
    assert denied(desk.sell(60)).startswith("max_order_quantity")
    assert passed(desk.sell(50))


def test_reducing_counts_only_the_orders_still_open_after_many_have_finished():
    desk, modes, _ = gated()
    desk.fill("BUY", 100)
    resting = [desk.sell(1, limit=str(110 + i)) for i in range(70)]  # past the index's first pruning
    for order in resting[:-1]:
        desk.kernel.cancel_order(order.order_id)
    modes.set_mode("s1", M.REDUCING, reason="x", actor="m")
    assert passed(desk.sell(99))  # 99 + the one still open = 100: flat at most
    assert "with 100 already open on that side would flip" in denied(desk.sell(1))
