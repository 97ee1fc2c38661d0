"""The append-only event store and replay, on a real SQLite file and on PostgreSQL."""
from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


def _insert_raw(store, stream: str, seq: int, payload: str, crc: int) -> None:
    from qlcore.store.tables import events as events_table

    with store.engine.begin() as conn:
        conn.execute(
            events_table.insert(),
            [{"stream": stream, "seq": seq, "ts": 1, "type": "OrderFilled", "payload": payload, "checksum": crc}],
        )


def _stored_checksum(store, stream: str, seq: int) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text(f"SELECT checksum FROM events WHERE stream = '{stream}' AND seq = {seq}")).scalar_one()


@pytest.mark.parametrize(
    "payload, reason",
    [
        ('["OrderFilled", 1]', "OrderFilled: 1 values for 9 fields"),
        ('{"ts": 1}', "not a JSON array"),
        ('["OrderTeleported", 1]', "unknown event type 'OrderTeleported'"),
        ("[1, 2", "not JSON"),
    ],
    ids=["short", "object", "unknown-type", "broken-json"],
)
def test_undecodable_event_with_valid_checksum_is_refused(store, payload, reason):
    from qlcore.events.store import checksum

    _write(store, n=1)
    _insert_raw(store, "t", 6, payload, checksum(_stored_checksum(store, "t", 5), payload))
    with pytest.raises(CorruptEventLog, match=rf"at seq 6: .*{reason}") as err:
        replay(store, "t")
    assert err.value.seq == 6


@pytest.mark.parametrize("seq", [10, 41])
def test_edited_checksum_that_closes_a_batch_is_refused_naming_its_sequence(store, store_url, seq):
    # a batch is checked against its last checksum; the ones inside it only locate a bad payload
    _write(store)  # 41 events
    _tamper(store_url, f"UPDATE events SET checksum = checksum + 1 WHERE stream = 't' AND seq = {seq}")
    with pytest.raises(CorruptEventLog, match=f"at seq {seq}: checksum mismatch"):
        list(store.iter_events("t", chunk=5))


def test_row_rewritten_with_its_own_checksum_breaks_the_chain_at_the_next_row(store, store_url):
    from qlcore.events.store import checksum

    _write(store)
    forged = '["OrderSubmitted", 3, "O-1"]'
    crc = checksum(_stored_checksum(store, "t", 2), forged)
    _tamper(store_url, f"UPDATE events SET payload = '{forged}', checksum = {crc} WHERE stream = 't' AND seq = 3")
    with pytest.raises(CorruptEventLog, match="at seq 4: checksum mismatch"):
        replay(store, "t")


def test_bad_row_deep_in_a_batch_is_named_and_no_event_of_its_batch_is_delivered(store, store_url):
    with store.writer("big") as w:
        w.extend(order_events(700))  # 2,800 events: batches of 1,000
    _tamper(store_url, "UPDATE events SET payload = REPLACE(payload, '101.25', '1.25') WHERE stream = 'big' AND seq = 1700")
    delivered: list[int] = []
    with pytest.raises(CorruptEventLog, match="at seq 1700: checksum mismatch"):
        for seqs, events in store.iter_batches("big", chunk=1000):
            assert len(seqs) == len(events)
            delivered += seqs
    assert delivered == list(range(1, 1001))


def test_reading_from_a_later_sequence_follows_the_chain_from_there(store):
    events = [AccountFunded(0, "main", D(1000)), *order_events(5)]
    with store.writer("f", batch_size=4) as w:
        w.extend(events)
    assert [(s.seq, s.event) for s in store.read("f", from_seq=7, chunk=3)] == list(enumerate(events, 1))[6:]


def test_a_continued_stream_reads_back_whole_and_checked(store):
    with store.writer("x") as w:
        w.extend(order_events(2))
    with store.writer("x") as w:
        w.extend(order_events(2, start=3))
    assert [e.order_id for e in store.events("x")] == [f"O-{i}" for i in (1, 2, 3, 4) for _ in range(4)]


def test_a_writer_that_lost_a_conflict_continues_the_chain_from_the_last_commit(store):
    a = store.writer("k", batch_size=100)
    b = store.writer("k", batch_size=100)
    a.extend(order_events(1))
    a.flush()
    b.extend(order_events(1, start=2))
    with pytest.raises(StoreConflict):
        b.flush()
    fresh = store.writer("k")
    fresh.extend(order_events(1, start=3))
    fresh.flush()
    assert [e.order_id for e in store.events("k")] == ["O-1"] * 4 + ["O-3"] * 4


def test_stored_payload_is_the_packed_array_with_decimals_as_strings(store):
    with store.writer("p") as w:
        w.append(AccountFunded(7, "main", D("1000.50")))
    with store.engine.connect() as conn:
        row = conn.execute(text("SELECT type, payload FROM events WHERE stream = 'p'")).one()
    assert tuple(row) == ("AccountFunded", '["AccountFunded",7,"main","1000.50","USD"]')


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


# --- any damage anywhere: the first bad row is named and nothing of its batch is delivered -------


@settings(max_examples=40, deadline=None)
@given(
    n_orders=st.integers(1, 40),
    batch_size=st.integers(1, 50),
    chunk=st.integers(1, 60),
    damage=st.sampled_from(["payload", "delete", "delete-run"]),
    where=st.floats(0, 1, exclude_max=True),
)
def test_damaged_row_anywhere_is_named_and_only_whole_earlier_batches_are_delivered(
    n_orders, batch_size, chunk, damage, where
):
    events = order_events(n_orders)
    bad = 1 + int(where * len(events))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'events.db'}"
        store = EventStore(url)
        try:
            with store.writer("h", batch_size=batch_size) as w:
                w.extend(events)
            if damage == "payload":  # a trailing space: still valid JSON, but not what was written
                _tamper(url, f"UPDATE events SET payload = payload || ' ' WHERE seq = {bad}")
            else:
                last = bad + 2 if damage == "delete-run" else bad
                _tamper(url, f"DELETE FROM events WHERE seq BETWEEN {bad} AND {last}")
            delivered: list[int] = []
            try:
                for seqs, batch in store.iter_batches("h", chunk=chunk):
                    assert batch == events[seqs[0] - 1 : seqs[-1]]
                    delivered += seqs
            except CorruptEventLog as exc:
                assert exc.seq == bad
                assert ("checksum mismatch" if damage == "payload" else "gap") in exc.reason
            else:
                # deleting the last rows leaves a shorter log that is whole as far as it goes
                assert damage != "payload" and bad + (2 if damage == "delete-run" else 0) >= len(events)
            assert delivered == list(range(1, len(delivered) + 1))
            assert len(delivered) < bad
        finally:
            store.engine.dispose()
