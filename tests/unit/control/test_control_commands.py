"""The command queue on a real SQLite file and on PostgreSQL: validation, order, claims, outcomes."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from qlcore.audit.log import AuditLog
from qlcore.audit.recorder import AuditRecorder
from qlcore.control import Command, CommandError, CommandQueue, CommandStateError
from qlcore.store.db import connect, dispose_all
from qlcore.store.tables import audit_log
from qlcore.store.tables import commands as commands_table


@pytest.fixture
def queue(store_url):
    yield CommandQueue(store_url)
    dispose_all()


def stored_rows(q: CommandQueue) -> int:
    with q.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(commands_table)).scalar_one()


ORDER = {"strategy_id": "s1", "symbol": "AAPL", "side": "BUY", "quantity": "10"}


# --- submit and order --------------------------------------------------------------------------------
def test_commands_come_back_in_submission_order_with_who_sent_them(queue):
    ids = [queue.submit(f"user{i}", "strategy.pause", {"strategy_id": f"s{i}"}) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    pending = queue.pending()
    assert [c.id for c in pending] == ids
    assert [c.user for c in pending] == [f"user{i}" for i in range(5)]
    assert [c.payload["strategy_id"] for c in pending] == [f"s{i}" for i in range(5)]
    assert all(c.status == "pending" and c.ts_submitted > 0 for c in pending)
    assert [c.id for c in queue.pending(after_id=ids[1], limit=2)] == ids[2:4]


def test_decimals_are_stored_as_canonical_text_and_read_back_as_decimals(queue):
    cid = queue.submit("ana", "order.submit", {**ORDER, "quantity": Decimal("10.50"), "price": 187})
    with queue.engine.connect() as conn:
        text = conn.execute(select(commands_table.c.payload).where(commands_table.c.id == cid)).scalar_one()
    assert text == '{"price":"187","quantity":"10.50","side":"BUY","strategy_id":"s1","symbol":"AAPL"}'
    cmd = queue.status(cid)
    assert cmd.payload["quantity"] == Decimal("10.50") and cmd.payload["price"] == Decimal("187")


def test_commands_for_another_target_are_not_pending_for_the_engine(queue):
    queue.submit("ana", "halt", {"reason": "test"}, target="engine-b")
    assert queue.pending() == []
    assert [c.kind for c in queue.pending(target="engine-b")] == ["halt"]


@pytest.mark.parametrize(
    ("user", "kind", "payload", "field", "why"),
    [
        ("", "halt", {"reason": "x"}, "user", "non-empty"),
        ("u" * 129, "halt", {"reason": "x"}, "user", "longer than 128"),
        ("ana", "strategy.explode", {}, "kind", "unknown command kind"),
        ("ana", "strategy.pause", {}, "strategy_id", "is required"),
        ("ana", "strategy.pause", {"strategy_id": ""}, "strategy_id", "non-empty string"),
        ("ana", "strategy.pause", {"strategy_id": "s1", "colour": "red"}, "colour", "unknown field"),
        ("ana", "strategy.stop", {"strategy_id": "s1", "flatten": "yes"}, "flatten", "true or false"),
        ("ana", "order.submit", {**ORDER, "side": "HOLD"}, "side", "must be one of"),
        ("ana", "order.submit", {**ORDER, "quantity": 1.5}, "quantity", "must be a decimal"),
        ("ana", "order.submit", {**ORDER, "quantity": "ten"}, "quantity", "not a decimal"),
        ("ana", "order.submit", {**ORDER, "quantity": "0"}, "quantity", "greater than zero"),
        ("ana", "order.submit", {**ORDER, "price": "NaN"}, "price", "finite"),
        ("ana", "order.submit", {**ORDER, "order_type": "ICEBERG"}, "order_type", "must be one of"),
        ("ana", "strategy.deploy", {"strategy_id": "s1", "strategy": "sma", "symbols": "AAPL"}, "symbols", "list"),
        ("ana", "strategy.deploy", {"strategy_id": "s1", "strategy": "sma", "params": {"blob": b"x"}}, "payload", "plain JSON"),
        ("ana", "order.cancel", ["o1"], "payload", "must be an object"),
        ("ana", "limits.set", {"limits": 5}, "limits", "object"),
    ],
)
def test_a_malformed_command_is_refused_naming_the_field_and_nothing_is_stored(queue, user, kind, payload, field, why):
    with pytest.raises(CommandError) as err:
        queue.submit(user, kind, payload)
    assert err.value.field == field
    assert why in err.value.reason
    assert stored_rows(queue) == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"strategy_id": "s1", "strategy": "sma", "password": "hunter2"}, "password"),
        ({"strategy_id": "s1", "strategy": "sma", "params": {"api_key": "k"}}, "params.api_key"),
        ({"strategy_id": "s1", "strategy": "sma", "params": {"feed": {"Auth_Token": "t"}}}, "params.feed.Auth_Token"),
        ({"strategy_id": "s1", "strategy": "sma", "limits": {"client_secret": "s"}}, "limits.client_secret"),
    ],
)
def test_secrets_are_refused_at_any_depth(queue, payload, field):
    with pytest.raises(CommandError) as err:
        queue.submit("ana", "strategy.deploy", payload)
    assert err.value.field == field and "secret" in err.value.reason
    assert stored_rows(queue) == 0


# --- take ---------------------------------------------------------------------------------------------
def test_take_claims_pending_commands_in_order_and_only_once(queue):
    ids = [queue.submit("ana", "order.cancel", {"order_id": f"o{i}"}) for i in range(5)]
    first = queue.take("engine-1", limit=3)
    assert [c.id for c in first] == ids[:3]
    assert all(c.status == "taken" and c.consumer == "engine-1" and c.ts_taken for c in first)
    assert [c.id for c in queue.pending()] == ids[3:]
    assert [c.id for c in queue.take("engine-1")] == ids[3:]
    assert queue.take("engine-1") == []
    assert [c.id for c in queue.in_flight("engine-1")] == ids


def test_two_racing_consumers_never_take_the_same_command_and_together_take_all(store_url):
    n = 200
    producer = CommandQueue(store_url)
    ids = [producer.submit("ana", "order.cancel", {"order_id": f"o{i}"}) for i in range(n)]
    got: dict[str, list[Command]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def consume(name: str) -> None:
        q = CommandQueue(store_url)  # each consumer its own queue object (shared pooled engine)
        start.wait()
        while batch := q.take(name, limit=1):
            got[name].extend(batch)

    threads = [threading.Thread(target=consume, args=(name,)) for name in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    taken_a = [c.id for c in got["a"]]
    taken_b = [c.id for c in got["b"]]
    assert not set(taken_a) & set(taken_b)
    assert sorted(taken_a + taken_b) == ids
    assert taken_a == sorted(taken_a) and taken_b == sorted(taken_b)  # each consumer sees id order
    assert all(producer.status(i).consumer in ("a", "b") for i in ids[:: n // 10])
    dispose_all()


def test_two_engines_on_separate_connections_race_for_one_command(store_url):
    producer = CommandQueue(store_url)
    cid = producer.submit("ana", "halt", {"reason": "race"})
    # separate engines: separate connection pools, as two processes would have
    from sqlalchemy import create_engine

    engines = [create_engine(store_url), create_engine(store_url)]
    queues = [CommandQueue(engine=e) for e in engines]
    results: list[list[Command]] = [[], []]
    start = threading.Barrier(2)

    def consume(i: int) -> None:
        start.wait()
        results[i] = queues[i].take(f"c{i}")

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(len(r) for r in results) == [0, 1]
    winner = next(r for r in results if r)[0]
    assert winner.id == cid and producer.status(cid).consumer == winner.consumer
    for e in engines:
        e.dispose()
    dispose_all()


# --- complete -----------------------------------------------------------------------------------------
def test_complete_records_acceptance_and_refusal_with_reason(queue):
    a = queue.submit("ana", "strategy.resume", {"strategy_id": "s1"})
    b = queue.submit("ben", "order.cancel", {"order_id": "o9"})
    queue.take("e1")
    done_a = queue.complete(a, True, consumer="e1")
    done_b = queue.complete(b, False, "unknown order id o9", consumer="e1")
    assert (done_a.status, done_a.reason) == ("accepted", "")
    assert (done_b.status, done_b.reason) == ("refused", "unknown order id o9")
    assert done_b.ts_completed is not None and done_b.ts_completed >= done_b.ts_taken
    assert queue.in_flight("e1") == []
    assert [c.id for c in queue.history(10)] == [b, a]


def test_completing_twice_or_for_another_consumer_or_untaken_raises(queue):
    cid = queue.submit("ana", "flatten", {})
    with pytest.raises(CommandStateError, match="cannot go from pending to accepted"):
        queue.complete(cid, True, consumer="e1")
    queue.take("e1")
    with pytest.raises(CommandStateError, match="taken by 'e1', not 'e2'"):
        queue.complete(cid, True, consumer="e2")
    with pytest.raises(ValueError, match="needs a reason"):
        queue.complete(cid, False, consumer="e1")
    queue.complete(cid, False, "nothing to flatten", consumer="e1")
    with pytest.raises(CommandStateError, match="cannot go from refused to accepted"):
        queue.complete(cid, True, consumer="e1")
    with pytest.raises(CommandStateError, match="no such command"):
        queue.complete(cid + 100, True, consumer="e1")
    assert queue.status(cid).status == "refused"
    with pytest.raises(KeyError):
        queue.status(cid + 100)


# --- wait_for -----------------------------------------------------------------------------------------
def test_wait_for_returns_the_outcome_once_completed(queue):
    cid = queue.submit("ana", "halt", {"reason": "drill"})

    def engine() -> None:
        q = CommandQueue(engine=queue.engine)
        for c in q.take("e1"):
            q.complete(c.id, True, consumer="e1")

    t = threading.Timer(0.05, engine)
    t.start()
    assert queue.wait_for(cid, timeout_s=60).status == "accepted"  # a bound, not a measure
    t.join()


def test_wait_for_times_out_naming_the_command(queue):
    cid = queue.submit("ana", "halt", {"reason": "nobody listening"})
    with pytest.raises(TimeoutError, match=rf"command {cid} \(halt\) still pending"):
        queue.wait_for(cid, timeout_s=0.05)


# --- audit --------------------------------------------------------------------------------------------
def test_refused_submissions_and_outcomes_are_audited_without_secrets(store_url):
    engine = connect(store_url)
    q = CommandQueue(engine=engine, audit=AuditRecorder(AuditLog(engine=engine)))
    with pytest.raises(CommandError):
        q.submit("eve", "strategy.deploy", {"strategy_id": "s1", "strategy": "sma", "params": {"password": "hunter2"}})
    cid = q.submit("ana", "order.cancel", {"order_id": "o7"})
    q.take("e1")
    q.complete(cid, False, "unknown order id o7", consumer="e1")
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.seq)).all()
    assert [(r.actor, r.action) for r in rows] == [("user:eve", "command.strategy.deploy"), ("user:ana", "command.order.cancel")]
    assert "hunter2" not in rows[0].details and "<redacted>" in rows[0].details
    assert "refused: params.password" in rows[0].details
    assert rows[1].subject == "o7" and "unknown order id o7" in rows[1].details
    assert f'"command_id":{cid}' in rows[1].details
    dispose_all()
