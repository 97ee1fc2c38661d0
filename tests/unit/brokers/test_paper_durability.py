"""The paper venue's durability contract: reports only after the commit, reopen and crash, replay to an engine."""
from __future__ import annotations

import sqlite3
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paper_venue_support import T0, Recorder, bar, make_order

from qlcore.brokers.paper import DuplicateClientOrderId, PaperVenue
from qlcore.engine.clock import BacktestClock
from qlcore.engine.kernel import Kernel
from qlcore.events.types import Event
from qlcore.execution.contract import AmbiguousOutcome, VenueStatus
from qlcore.model.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from qlcore.model.instruments import Instrument

BUY, SELL = OrderSide.BUY, OrderSide.SELL
D = Decimal


def test_changes_reach_the_engine_only_after_the_flush_commits_them(open_venue, recorder, ledger_path):
    venue = open_venue()
    venue.submit(make_order("O-1", BUY, 10))
    venue.on_bar(bar(1, 100, 100, 100, 100))
    assert recorder.seen == [] and venue.pending_reports == 2
    assert venue.query("O-1").status is VenueStatus.UNKNOWN  # queries read what is committed
    assert venue.order_count() == 0 and venue.fills() == []
    assert venue.flush() == 2
    assert [r[0] for r in recorder.seen] == ["accepted", "filled"]
    assert venue.query("O-1").status is VenueStatus.FILLED
    with sqlite3.connect(ledger_path) as other:  # another process sees the same ledger
        assert other.execute("SELECT status, filled FROM venue_orders").fetchall() == [("FILLED", "10")]
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert venue.flush() == 0  # nothing new: nothing delivered twice


def test_reopening_the_ledger_restores_open_orders_and_fills_and_matching_continues(open_venue, recorder):
    venue = open_venue(participation=0.5)
    venue.submit(make_order("O-1", BUY, 100))
    venue.submit(make_order("O-2", SELL, 10, OrderType.LIMIT, price="120"))
    venue.submit(make_order("O-3", BUY, 5, OrderType.STOP_LIMIT, price="104", trigger="105"))
    venue.on_bar(bar(1, 100, 101, 99, 100, volume=80))  # O-1: 40 of 100
    venue.on_bar(bar(2, 106, 107, 105, 106, volume=0))  # O-3 triggers at 106 > 104: rests as a limit
    venue.flush()
    before = (venue.open_orders(), venue.fills(), venue.positions(), venue.order_count())
    venue.close()

    reopened = open_venue(participation=0.5)
    assert (reopened.open_orders(), reopened.fills(), reopened.positions(), reopened.order_count()) == before
    assert [s.client_order_id for s in before[0]] == ["O-1", "O-2", "O-3"]
    assert before[2] == {"AAPL": D(40)}
    assert reopened.working_count == 3
    reopened.on_bar(bar(3, 103.5, 104.5, 103, 104, volume=200))  # below the stop: only a triggered O-3 fills
    reopened.flush()
    assert [(r[1], r[2], r[3], r[4]) for r in recorder.of("filled")] == [
        ("O-1", "PAPER-T1", D(40), D(100)),
        ("O-1", "PAPER-T2", D(60), D("103.5")),
        ("O-3", "PAPER-T3", D(5), D("103.5")),
    ]
    assert reopened.positions() == {"AAPL": D(105)}
    assert [s.client_order_id for s in reopened.open_orders()] == ["O-2"]


def test_a_crash_before_the_flush_loses_exactly_the_unflushed_changes(open_venue, recorder):
    venue = open_venue(participation=0.5)
    venue.submit(make_order("O-1", BUY, 100))
    venue.submit(make_order("O-2", BUY, 10, OrderType.LIMIT, price="90"))
    venue.on_bar(bar(1, 100, 100, 100, 100, volume=100))  # O-1: 50
    venue.flush()
    committed = (venue.open_orders(), venue.fills(), venue.positions(), venue.order_count())
    delivered = list(recorder.seen)

    venue.submit(make_order("O-3", SELL, 7))
    venue.cancel("O-2")
    venue.on_bar(bar(2, 101, 101, 101, 101, volume=1000))  # O-1's rest, O-3
    venue.close()  # dropped without a flush: a crash

    reopened = open_venue(participation=0.5)
    assert recorder.seen == delivered  # no report of a lost change ever reached the engine
    assert (reopened.open_orders(), reopened.fills(), reopened.positions(), reopened.order_count()) == committed
    assert reopened.query("O-3").status is VenueStatus.UNKNOWN
    assert reopened.query("O-2").status is VenueStatus.WORKING
    reopened.submit(make_order("O-3", SELL, 7))  # never received, so no duplicate
    reopened.on_bar(bar(2, 101, 101, 101, 101, volume=1000))
    reopened.flush()
    assert [(r[1], r[2], r[3]) for r in recorder.seen[len(delivered) :] if r[0] == "filled"] == [
        ("O-1", "PAPER-T2", D(50)),  # the lost trade id is reused: the engine never saw the lost one
        ("O-3", "PAPER-T3", D(7)),
    ]
    assert reopened.positions() == {"AAPL": D(93)}


def test_a_second_order_with_a_known_client_order_id_is_refused_and_counted(open_venue, recorder):
    venue = open_venue()
    venue.submit(make_order("O-1", BUY, 10))
    with pytest.raises(DuplicateClientOrderId, match="duplicate client order id O-1") as refused:
        venue.submit(make_order("O-1", BUY, 10))
    assert isinstance(refused.value, AmbiguousOutcome)  # the execution client settles it by a query
    venue.flush()
    venue.close()
    reopened = open_venue()
    with pytest.raises(DuplicateClientOrderId, match="status WORKING"):
        reopened.submit(make_order("O-1", SELL, 99))
    reopened.flush()
    assert (reopened.duplicate_submits, reopened.order_count()) == (2, 1)
    assert [r[0] for r in recorder.seen] == ["accepted"]
    assert open_venue().duplicate_submits == 2
    with sqlite3.connect(reopened.path) as other, pytest.raises(sqlite3.IntegrityError):
        other.execute("INSERT INTO venue_orders SELECT * FROM venue_orders")  # the file itself refuses it


def test_a_cancel_of_an_unknown_or_finished_order_is_rejected_with_a_reason(open_venue, recorder):
    venue = open_venue()
    venue.submit(make_order("O-1", BUY, 10))
    venue.on_bar(bar(1, 100, 100, 100, 100))
    venue.cancel("O-1")
    venue.cancel("nope")
    venue.flush()
    assert recorder.of("cancel_rejected") == [
        ("cancel_rejected", "O-1", "order is not working at the venue: the order is FILLED"),
        ("cancel_rejected", "nope", "order is not working at the venue: no order with this client order id"),
    ]


def test_reports_not_taken_by_a_failing_engine_stay_queued_for_the_next_flush(open_venue, recorder):
    class Dies(RuntimeError):
        pass

    venue = open_venue()
    calls = []

    def dying(order_id, venue_order_id):
        calls.append(order_id)
        if len(calls) == 1:
            raise Dies("engine stopped")

    recorder.on_accepted = dying
    venue.submit(make_order("O-1", BUY, 10))
    venue.submit(make_order("O-2", BUY, 10))
    with pytest.raises(Dies):
        venue.flush()
    assert venue.query("O-2").status is VenueStatus.WORKING  # committed before any delivery
    assert venue.flush() == 1
    assert calls == ["O-1", "O-2"]


def test_a_ledger_keeps_the_venue_name_it_was_created_with(open_venue, ledger_path):
    open_venue(venue="ALPHA").close()
    with pytest.raises(ValueError, match="belongs to venue 'ALPHA', not 'BETA'"):
        PaperVenue(ledger_path, venue="BETA")


def test_an_order_in_transit_survives_a_reopen_and_is_acknowledged_when_its_latency_passes(open_venue, recorder):
    venue = open_venue(latency_ms=90_000)
    venue.on_bar(bar(0, 100, 100, 100, 100))
    venue.submit(make_order("O-1", BUY, 10))
    venue.flush()
    venue.close()
    reopened = open_venue(latency_ms=90_000)
    assert reopened.query("O-1").status is VenueStatus.UNKNOWN
    record = reopened.history("O-1")
    assert (record.in_transit, record.ack_ts, record.acknowledged) == (True, T0 + 90_000_000_000, False)
    reopened.on_bar(bar(1, 101, 101, 101, 101))
    reopened.flush()
    assert recorder.seen == []
    reopened.on_bar(bar(2, 102, 102, 102, 102))
    reopened.flush()
    assert [(r[0], r[1]) for r in recorder.seen] == [("accepted", "O-1"), ("filled", "O-1")]
    assert reopened.history("O-1").in_transit is False


def test_a_file_that_is_not_a_ledger_is_refused_naming_it(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ValueError, match=r"junk\.sqlite is not a usable SQLite file"):
        PaperVenue(junk)


def test_an_engine_restarted_after_a_crash_gets_the_reports_it_missed(ledger_path):
    instruments = {"AAPL": Instrument("AAPL")}
    venue = PaperVenue(ledger_path, participation=0.5)
    clock = BacktestClock(T0)
    engine = Kernel(clock=clock, broker=venue, instruments=instruments)
    seen: list[Event] = []
    engine.bus.subscribe(seen.append)
    buy = engine.submit_order("s1", "AAPL", BUY, 100)
    limit = engine.submit_order("s1", "AAPL", SELL, 10, OrderType.LIMIT, price="150")
    resting = engine.submit_order("s1", "AAPL", BUY, 1, OrderType.LIMIT, price="10")
    venue.flush()
    venue.on_bar(bar(1, 100, 100, 100, 100, volume=100))
    venue.flush()  # the engine has 50 of 100
    venue.on_bar(bar(2, 101, 101, 101, 101, volume=1000))  # the other 50
    engine.cancel_order(limit)

    class Killed(BaseException):
        pass

    def killed(*args):
        raise Killed  # SIGKILL after the commit, before the engine took the reports

    engine.on_filled = killed
    with pytest.raises(Killed):
        venue.flush()
    venue.close()

    # the restart: state rebuilt from the events the engine had stored, then reconciled with the venue
    venue = PaperVenue(ledger_path, participation=0.5)
    restarted = Kernel(clock=clock, broker=venue, instruments=instruments)
    restarted.state.apply_all(seen)
    state = restarted.state
    assert (state.orders[buy].filled_quantity, state.orders[limit].status) == (D(50), OrderStatus.PENDING_CANCEL)
    open_orders = state.open_orders()
    assert venue.replay_reports(open_orders) == 2
    assert (state.orders[buy].status, state.orders[buy].filled_quantity) == (OrderStatus.FILLED, D(100))
    assert state.orders[limit].status is OrderStatus.CANCELED
    assert state.orders[resting].status is OrderStatus.ACCEPTED
    assert {s: state.net_position(s) for s in venue.positions()} == venue.positions() == {"AAPL": D(100)}
    assert venue.replay_reports(state.orders.values()) == 0  # nothing missed twice
    venue.close()


# --- property: random sessions with flushes, crashes and restarts -----------------------------------

_SYMBOLS = ("AAPL", "MSFT")
_op = st.one_of(
    st.tuples(
        st.just("submit"),
        st.sampled_from(_SYMBOLS),
        st.sampled_from([BUY, SELL]),
        st.sampled_from(list(OrderType)),
        st.integers(1, 40),
        st.sampled_from(list(TimeInForce)),
        st.integers(-3, 3),
    ),
    st.tuples(st.just("resubmit"), st.integers(0, 50)),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("bar"), st.sampled_from(_SYMBOLS), st.integers(-3, 3), st.integers(0, 120)),
    st.just(("flush",)),
    st.just(("crash",)),
    st.just(("restart",)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, max_size=40))
def test_random_sessions_keep_positions_equal_to_fills_and_never_hold_a_client_id_twice(ops):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "paper.sqlite"
        seen = Recorder()
        options = {"participation": 0.25, "latency_ms": 30_000.0, "reject_rate": 0.1}
        venue = PaperVenue(path, **options)
        venue.bind(seen)
        sent: list[str] = []
        committed: set[str] = set()
        held: set[str] = set()
        px = {s: 100 for s in _SYMBOLS}
        step = 0
        for op in ops:
            kind = op[0]
            if kind == "submit":
                _, symbol, side, order_type, qty, tif, off = op
                coid = f"O-{len(sent) + 1}"
                sent.append(coid)
                limit = str(px[symbol] + off) if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
                stop = str(px[symbol] - off) if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) else None
                venue.submit(make_order(coid, side, qty, order_type, symbol=symbol, price=limit, trigger=stop, tif=tif))
                held.add(coid)
            elif kind == "resubmit" and sent:
                coid = sent[op[1] % len(sent)]
                if coid in held:
                    with pytest.raises(DuplicateClientOrderId):
                        venue.submit(make_order(coid, BUY, 1))
                else:  # lost in a crash: the venue never had it, so it takes it now
                    venue.submit(make_order(coid, BUY, 1))
                    held.add(coid)
            elif kind == "cancel" and sent:
                venue.cancel(sent[op[1] % len(sent)])
            elif kind == "bar":
                _, symbol, move, volume = op
                step += 1
                o = px[symbol]
                px[symbol] = c = max(1, o + move)
                venue.on_bar(bar(step, o, max(o, c) + 1, max(1, min(o, c) - 1), c, volume=volume, symbol=symbol))
            elif kind == "flush":
                venue.flush()
                committed = set(held)
            elif kind in ("crash", "restart"):
                if kind == "restart":
                    venue.flush()
                    committed = set(held)
                venue.close()
                held = set(committed)
                venue = PaperVenue(path, **options)
                venue.bind(seen)
        venue.flush()
        venue.close()

        venue = PaperVenue(path, **options)
        try:
            fills = venue.fills()
            net: dict[str, Decimal] = {}
            for f in fills:
                net[f.symbol] = net.get(f.symbol, D(0)) + (f.quantity if f.side is BUY else -f.quantity)
            assert venue.positions() == {s: q for s, q in net.items() if q}
            # every report the engine took is in the ledger, and every ledger fill was reported once
            reported = [(r[1], r[2], r[3], r[4], r[5]) for r in seen.of("filled")]
            assert reported == [(f.client_order_id, f.trade_id, f.quantity, f.price, f.fee) for f in fills]
            assert venue.order_count() == len(held)
            for coid in held:
                record = venue.history(coid)
                assert record is not None
                assert record.filled_quantity == sum((f.quantity for f in record.fills), D(0)) <= record.quantity
            assert len({f.trade_id for f in fills}) == len(fills)
        finally:
            venue.close()
