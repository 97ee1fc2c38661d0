"""The append-only event store and replay, on a real SQLite file and on PostgreSQL."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.events import CorruptEventLog, EventStore, StoreConflict
from qlcore.events.replay import replay
from qlcore.events.types import (
    AccountFunded,
    OrderAccepted,
    OrderFilled,
    OrderInitialized,
    OrderSubmitted,
)
from qlcore.model.enums import OrderSide, OrderType
from qlcore.model.state import TradingState
from qlcore.store.db import connect

D = Decimal


def order_events(n_orders: int, start: int = 1) -> list:
    out = []
    for i in range(start, start + n_orders):
        oid = f"O-{i}"
        out += [
            OrderInitialized(i, oid, "s", "AAPL", OrderSide.BUY, OrderType.MARKET, D(10)),
            OrderSubmitted(i, oid),
            OrderAccepted(i, oid, f"V-{i}"),
            OrderFilled(i, oid, f"T-{i}", "s", "AAPL", OrderSide.BUY, D(10), D("101.25"), D("0.50")),
        ]
    return out


@pytest.fixture
def store(store_url) -> EventStore:
    return EventStore(store_url)


def test_appended_events_read_back_equal_with_gap_free_sequence(store):
    events = [AccountFunded(0, "main", D(1000)), *order_events(25)]
    with store.writer("run-a", batch_size=7) as w:
        seqs = [w.append(e) for e in events]
    assert seqs == list(range(1, len(events) + 1))
    stored = list(store.read("run-a"))
    assert [s.seq for s in stored] == seqs
    assert [s.event for s in stored] == events
    assert store.count("run-a") == len(events)


def test_batches_commit_only_when_full_or_flushed(store):
    w = store.writer("run-b", batch_size=10)
    for e in order_events(2):  # 8 events: below the batch size
        w.append(e)
    assert store.count("run-b") == 0 and w.pending == 8
    for e in order_events(1, start=3):  # 12 events: one batch committed
        w.append(e)
    assert store.count("run-b") == 10 and w.pending == 2
    w.flush()
    assert store.count("run-b") == 12


def test_a_new_writer_continues_the_sequence_and_streams_are_independent(store):
    with store.writer("x") as w:
        w.extend(order_events(1))
    with store.writer("y") as w:
        w.extend(order_events(2))
    with store.writer("x") as w:
        assert w.append(AccountFunded(5, "main", D(1))) == 5
    assert store.last_seq("x") == 5 and store.last_seq("y") == 8
    assert sorted(store.streams()) == ["x", "y"]


def test_two_writers_on_one_stream_conflict_and_nothing_partial_is_stored(store):
    a = store.writer("c", batch_size=100)
    b = store.writer("c", batch_size=100)
    a.extend(order_events(1))
    a.flush()
    b.extend(order_events(1, start=2))
    with pytest.raises(StoreConflict, match="already stored"):
        b.flush()
    assert store.count("c") == 4
    assert [s.event.order_id for s in store.read("c")] == ["O-1"] * 4


def test_replay_rebuilds_the_live_state_hash(store):
    events = [AccountFunded(0, "main", D(100_000)), *order_events(40)]
    live = TradingState()
    with store.writer("r") as w:
        for e in events:
            live.apply(e)
            w.append(e)
    result = replay(store, "r")
    assert result.state_hash == live.state_hash()
    assert result.state.cash == D(100_000) - 40 * (D(10) * D("101.25") + D("0.50"))
    assert result.events == len(events)


def test_backtest_run_replays_to_its_recorded_hash(store):
    from qlcore.data import load_sample
    from qlcore.strategies import create_strategy

    eng = BacktestEngine(BacktestConfig(fee_bps=D(10)), store=store)
    eng.add_strategy(create_strategy("sma_cross", {"fast": 5, "slow": 20}))
    result = eng.run({"GOOG": load_sample("GOOG")})
    rep = replay(store, result.run_id)
    assert rep.recorded_hash == result.state_hash
    assert rep.verified
    assert rep.state.equity() == result.final_equity
    assert len(rep.state.orders) == len(result.orders) > 50


def _tamper(store_url: str, sql: str) -> None:
    engine = connect(store_url)
    with engine.begin() as conn:
        conn.execute(text(sql))


def _write(store, stream="t", n=10):
    with store.writer(stream) as w:
        w.extend([AccountFunded(0, "main", D(1000)), *order_events(n)])


def test_edited_payload_is_refused_naming_its_sequence(store, store_url):
    _write(store)
    _tamper(store_url, "UPDATE events SET payload = REPLACE(payload, '101.25', '1.25') WHERE stream = 't' AND seq = 9")
    with pytest.raises(CorruptEventLog, match="at seq 9: checksum mismatch") as err:
        replay(store, "t")
    assert err.value.seq == 9


def test_gap_in_the_log_is_refused_naming_the_first_missing_sequence(store, store_url):
    _write(store)
    _tamper(store_url, "DELETE FROM events WHERE stream = 't' AND seq IN (14, 15)")
    with pytest.raises(CorruptEventLog, match=r"at seq 14: gap: seq 14\.\.15 missing before 16"):
        replay(store, "t")


def test_undecodable_event_with_valid_checksum_is_refused(store):
    from qlcore.events.store import checksum
    from qlcore.store.tables import events as events_table

    _write(store, n=1)
    bad = '{"ts": 1}'
    with store.engine.begin() as conn:
        conn.execute(
            events_table.insert(),
            [{"stream": "t", "seq": 6, "ts": 1, "type": "OrderFilled", "payload": bad, "checksum": checksum("t", 6, "OrderFilled", bad)}],
        )
    with pytest.raises(CorruptEventLog, match="at seq 6: OrderFilled"):
        replay(store, "t")


def test_event_that_breaks_the_order_state_machine_is_refused_naming_it(store):
    with store.writer("m") as w:
        w.extend(order_events(1))
        w.append(OrderAccepted(9, "O-1", "V-again"))  # accepted after filled
    with pytest.raises(CorruptEventLog, match="at seq 5: cannot apply OrderAccepted"):
        replay(store, "m")


def test_replay_of_unknown_stream_is_a_lookup_error(store):
    with pytest.raises(LookupError, match="no events stored for 'nope'"):
        replay(store, "nope")


def test_sqlite_store_runs_in_wal_mode(tmp_path):
    engine = connect(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


@pytest.mark.parametrize("missing", [5, 6, 7])
def test_gap_at_a_chunk_boundary_is_found(store, store_url, missing):
    _write(store)
    _tamper(store_url, f"DELETE FROM events WHERE stream = 't' AND seq = {missing}")
    with pytest.raises(CorruptEventLog, match=f"at seq {missing}: gap"):
        list(store.iter_events("t", chunk=5))
