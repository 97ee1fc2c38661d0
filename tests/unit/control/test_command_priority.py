"""Protective commands jump the queue, pages are bounded, and each client is bounded at submission
(a real SQLite file and PostgreSQL); what a command that jumped the queue supersedes (`Fences`)."""
from __future__ import annotations

import pytest
from signed import signer
from sqlalchemy import func, select

from qlcore.audit.log import AuditLog
from qlcore.audit.recorder import AuditRecorder
from qlcore.control import CommandLimitError, CommandLimits, CommandQueue
from qlcore.control.keys import provision
from qlcore.control.priority import Fences
from qlcore.store.db import dispose_all
from qlcore.store.tables import audit_log
from qlcore.store.tables import commands as commands_table

ORDER = {"strategy_id": "s1", "symbol": "AAPL", "side": "BUY", "quantity": "10"}
UNBOUNDED = CommandLimits(max_pending=0, max_per_s=0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def url(store_url):
    yield store_url
    dispose_all()


def _rows(q: CommandQueue) -> int:
    with q.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(commands_table)).scalar_one()


# --- lanes ---------------------------------------------------------------------------------------------
def test_the_kill_switch_then_protective_commands_are_taken_before_orders_sent_earlier(url):
    q = CommandQueue(url, limits=UNBOUNDED)
    o1 = q.submit("flood", "order.submit", ORDER)
    cancel = q.submit("desk", "order.cancel", {"order_id": "engine-1"})
    o2 = q.submit("flood", "order.submit", ORDER)
    pause = q.submit("desk", "strategy.pause", {"strategy_id": "s1"})
    halt = q.submit("risk", "halt", {"reason": "flood"})
    resume = q.submit("risk", "resume_trading", {})
    o3 = q.submit("flood", "order.submit", ORDER)
    taken = q.take("e", limit=10)
    assert [c.id for c in taken] == [halt, cancel, pause, o1, o2, resume, o3]
    assert all(c.status == "taken" and c.consumer == "e" for c in taken)


def test_a_page_is_bounded_and_a_halt_sent_behind_a_backlog_is_in_the_next_page(url):
    q = CommandQueue(url, limits=UNBOUNDED)
    orders = [q.submit("flood", "order.submit", ORDER) for _ in range(7)]
    assert [c.id for c in q.take("e", limit=3)] == orders[:3]
    halt = q.submit("risk", "halt", {"reason": "flood"})
    assert [c.id for c in q.take("e", limit=3)] == [halt, *orders[3:5]]
    assert [c.id for c in q.pending()] == orders[5:]


def test_a_page_of_protective_commands_alone_leaves_the_orders_pending(url):
    q = CommandQueue(url, limits=UNBOUNDED)
    order = q.submit("flood", "order.submit", ORDER)
    cancels = [q.submit("desk", "order.cancel", {"order_id": f"engine-{i}"}) for i in range(3)]
    assert [c.id for c in q.take("e", limit=2)] == cancels[:2]
    assert [c.id for c in q.take("e", limit=2)] == [cancels[2], order]


# --- per-client bounds ------------------------------------------------------------------------------------
def test_a_client_over_its_waiting_bound_is_refused_at_once_naming_the_limit_and_nothing_is_stored(url, tmp_path):
    audit = AuditRecorder(AuditLog(url, batch_size=1))
    q = CommandQueue(url, limits=CommandLimits(max_pending=3, max_per_s=0), audit=audit)
    for _ in range(3):
        q.submit("flood", "order.submit", ORDER)
    with pytest.raises(CommandLimitError) as err:
        q.submit("flood", "strategy.resume", {"strategy_id": "s1"})
    assert (err.value.limit, err.value.bound, err.value.value, err.value.user) == ("max_pending", 3, 3, "flood")
    assert "max_pending" in str(err.value) and "QLCORE_COMMAND_MAX_PENDING" in str(err.value)
    assert _rows(q) == 3
    with q.engine.connect() as conn:
        outcomes = conn.execute(select(audit_log.c.details)).scalars().all()
    assert len(outcomes) == 1 and "max_pending" in outcomes[0]
    # another client is not bounded by this one, nor another engine's queue by this one's
    q.submit("desk", "order.submit", ORDER)
    q.submit("flood", "order.submit", ORDER, target="engine-b")
    # protective commands are never bounded
    q.submit("flood", "halt", {"reason": "mine"})
    q.submit("flood", "order.cancel", {"order_id": "engine-1"})
    # once the engine has taken some, the client may send again
    for c in q.take("engine", limit=3):
        q.complete(c.id, True, consumer="engine")
    q.submit("flood", "order.submit", ORDER)


def test_a_client_over_its_rate_is_refused_until_the_second_has_passed(url):
    clock = Clock()
    q = CommandQueue(url, limits=CommandLimits(max_pending=0, max_per_s=2), clock=clock)
    q.submit("fast", "order.submit", ORDER)
    clock.now += 400_000_000
    q.submit("fast", "order.submit", ORDER)
    with pytest.raises(CommandLimitError) as err:
        q.submit("fast", "order.submit", ORDER)
    assert (err.value.limit, err.value.bound, err.value.value) == ("max_per_s", 2, 2)
    q.submit("slow", "order.submit", ORDER)
    q.submit("fast", "flatten", {})  # protective: never bounded
    clock.now += 700_000_000  # the first one is now more than a second old
    q.submit("fast", "order.submit", ORDER)
    assert _rows(q) == 5


def test_limits_come_from_the_environment_and_bad_values_name_the_variable():
    assert CommandLimits.from_env({}) == CommandLimits()
    assert CommandLimits.from_env({"QLCORE_COMMAND_MAX_PENDING": "7", "QLCORE_COMMAND_MAX_PER_S": "0"}) == \
        CommandLimits(max_pending=7, max_per_s=0)
    with pytest.raises(ValueError, match=r"QLCORE_COMMAND_MAX_PER_S.*'lots'"):
        CommandLimits.from_env({"QLCORE_COMMAND_MAX_PER_S": "lots"})
    with pytest.raises(ValueError, match=r"max_pending.*-1"):
        CommandLimits.from_env({"QLCORE_COMMAND_MAX_PENDING": "-1"})


def test_the_fences_a_restart_needs_are_the_completed_protective_commands_after_the_oldest_pending(url):
    q = CommandQueue(url, limits=UNBOUNDED)
    early_pause = q.submit("desk", "strategy.pause", {"strategy_id": "s0"})
    resume = q.submit("risk", "resume_trading", {})
    q.submit("desk", "order.cancel", {"order_id": "engine-1"})
    halt = q.submit("risk", "halt", {"reason": "x"})
    q.submit("desk", "strategy.stop", {"strategy_id": "s1"})  # still pending: not a fence yet
    assert q.fences_since_oldest_pending() == []  # nothing handled yet
    taken = q.take("engine", limit=3)  # the halt, the pause, the cancel
    assert [c.id for c in taken][:2] == [halt, early_pause]
    for c in taken:
        q.complete(c.id, True, consumer="engine")
    assert [c.id for c in q.fences_since_oldest_pending()] == [halt]
    assert resume < halt and early_pause < resume


# --- fences ----------------------------------------------------------------------------------------------
def test_a_halt_supersedes_a_resume_sent_before_it_but_not_one_sent_after():
    fences = Fences()
    fences.record(10, "halt", {"reason": "x"})
    why = fences.superseded(9, "resume_trading", {})
    assert why is not None and "command 10 (halt of the account)" in why
    assert fences.superseded(11, "resume_trading", {}) is None
    assert fences.superseded(9, "order.submit", ORDER) is None  # the HALTED account denies it


def test_a_pause_supersedes_earlier_orders_deployments_and_resumes_of_its_strategy_only():
    fences = Fences()
    fences.record(20, "strategy.pause", {"strategy_id": "s1"})
    for kind, payload in (("order.submit", ORDER), ("strategy.resume", {"strategy_id": "s1"}),
                          ("strategy.deploy", {"strategy_id": "s1", "strategy": "sma_cross"})):
        why = fences.superseded(19, kind, payload)
        assert why is not None and "strategy.pause of strategy s1" in why
        assert fences.superseded(21, kind, payload) is None
    assert fences.superseded(19, "order.submit", {**ORDER, "strategy_id": "s2"}) is None
    fences.record(30, "strategy.stop", {"strategy_id": "s1"})
    assert "command 30" in (fences.superseded(25, "strategy.resume", {"strategy_id": "s1"}) or "")


@pytest.mark.parametrize(("scope", "strategy_id", "symbol", "superseded"), [
    ({}, "s2", "MSFT", True),
    ({"symbol": "AAPL"}, "s2", "AAPL", True),
    ({"symbol": "AAPL"}, "s2", "MSFT", False),
    ({"strategy_id": "s1"}, "s1", "MSFT", True),
    ({"strategy_id": "s1"}, "s2", "AAPL", False),
    ({"strategy_id": "s1", "symbol": "AAPL"}, "s1", "AAPL", True),
    ({"strategy_id": "s1", "symbol": "AAPL"}, "s1", "MSFT", False),
])
def test_a_flatten_supersedes_earlier_orders_in_its_scope(scope, strategy_id, symbol, superseded):
    fences = Fences()
    fences.record(40, "flatten", scope)
    order = {**ORDER, "strategy_id": strategy_id, "symbol": symbol}
    assert (fences.superseded(39, "order.submit", order) is not None) is superseded
    assert fences.superseded(41, "order.submit", order) is None


def test_a_cancel_sets_no_fence_and_only_the_latest_fence_of_a_scope_is_kept():
    fences = Fences()
    fences.record(5, "order.cancel", {"order_id": "engine-1"})
    assert len(fences) == 0
    fences.record(8, "halt", {"reason": "b"})
    fences.record(6, "halt", {"reason": "a"})  # an older one recorded later does not lower the fence
    assert "command 8" in (fences.superseded(7, "resume_trading", {}) or "")


def test_the_cli_refuses_at_once_naming_the_bound_and_a_halt_still_goes_through(sqlite_url, monkeypatch):
    from typer.testing import CliRunner

    from qlcore.cli import app

    monkeypatch.setenv("QLCORE_COMMAND_MAX_PENDING", "1")
    provision(signer().store, {"trader": "trader"})  # the sender's key file, where the CLI looks for it
    order = ["order", "submit", "--strategy", "desk", "--symbol", "AAPL", "--side", "BUY", "--qty", "1",
             "--user", "trader", "--wait", "0", "--db", sqlite_url]
    first = CliRunner().invoke(app, order)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, order)
    assert second.exit_code == 1 and "max_pending" in second.output and "QLCORE_COMMAND_MAX_PENDING" in second.output
    halted = CliRunner().invoke(app, ["halt", "--reason", "x", "--user", "trader", "--wait", "0", "--db", sqlite_url])
    assert halted.exit_code == 0, halted.output
    assert [c.kind for c in CommandQueue(sqlite_url).history()] == ["halt", "order.submit"]
    with CommandQueue(sqlite_url).engine.connect() as conn:
        audited = conn.execute(select(audit_log.c.actor, audit_log.c.details)).all()
    assert [(a, "max_pending" in d) for a, d in audited] == [("user:trader", True)]
    dispose_all()


def test_a_dashboard_action_over_a_bound_is_refused_naming_it_and_audited(sqlite_url, tmp_path, monkeypatch):
    from qlcore.control.users import UserStore
    from qlcore.store.db import connect
    from qlcore.ui.actions import AUDIT_REFUSED, ActionRefused, Actions
    from qlcore.ui.readmodel import ReadModel

    monkeypatch.setenv("QLCORE_COMMAND_MAX_PENDING", "1")
    users = UserStore(tmp_path / "users.toml")
    users.add("tina", "trader", "tina-trader-pw")
    db = connect(sqlite_url)
    actions = Actions(db, users)
    actions.perform("order.submit", ORDER, user="tina")
    with pytest.raises(ActionRefused, match="max_pending"):
        actions.perform("order.submit", ORDER, user="tina")
    actions.perform("halt", {"reason": "still heard"}, user="tina")
    [refused] = ReadModel(engine=db).audit_search(action=AUDIT_REFUSED)
    assert refused.actor == "user:tina" and "max_pending" in refused.data["outcome"]
    assert [c.kind for c in CommandQueue(engine=db).history()] == ["halt", "order.submit"]
    dispose_all()
