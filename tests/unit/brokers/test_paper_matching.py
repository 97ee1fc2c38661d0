"""The paper venue matches like the simulated broker, and adds volume limits, latency and injected rejects."""
from __future__ import annotations

import random
from decimal import Decimal

import pytest
from paper_venue_support import MINUTE, T0, Recorder, bar, make_order

from qlcore.brokers.matching import FillModel
from qlcore.brokers.paper import PaperVenue
from qlcore.brokers.simulated import SimulatedBroker
from qlcore.execution.contract import VenueStatus
from qlcore.model.enums import OrderSide, OrderType, TimeInForce
from qlcore.model.instruments import Instrument

BUY, SELL = OrderSide.BUY, OrderSide.SELL
D = Decimal
DAY_BARS = 24 * 60  # bars are one minute apart: this many later is the next day


def _random_session(seed: int, n_bars: int = 120):
    """Bars of two symbols and, per bar, the orders sent and cancels requested after it."""
    rng = random.Random(seed)
    px = {"AAPL": 100.0, "MSFT": 300.0}
    steps = []
    sent: list[str] = []
    for i in range(n_bars):
        bars = []
        for sym in px:
            o = px[sym]
            c = round(o * (1 + rng.uniform(-0.02, 0.02)), 2)
            h = round(max(o, c) * (1 + rng.uniform(0, 0.01)), 2)
            lo = round(min(o, c) * (1 - rng.uniform(0, 0.01)), 2)
            px[sym] = c
            # every 40 bars the session moves to a later day, so DAY orders expire along the way
            bars.append(bar(i + (i // 40) * DAY_BARS, o, h, lo, c, symbol=sym))
        orders = []
        for _ in range(rng.randint(0, 3)):
            sym = rng.choice(list(px))
            ref = px[sym]
            kind = rng.choice(list(OrderType))
            side = rng.choice([BUY, SELL])
            away = ref * rng.uniform(-0.02, 0.02)
            limit = f"{ref + away:.2f}" if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
            stop = f"{ref - away:.2f}" if kind in (OrderType.STOP, OrderType.STOP_LIMIT) else None
            coid = f"O-{len(sent) + 1}"
            sent.append(coid)
            orders.append(
                make_order(
                    coid,
                    side,
                    rng.randint(1, 50),
                    kind,
                    symbol=sym,
                    price=limit,
                    trigger=stop,
                    tif=rng.choice(list(TimeInForce)),
                )
            )
        cancels = [rng.choice(sent)] if sent and rng.random() < 0.15 else []
        steps.append((bars, orders, cancels))
    return steps


def _comparable(seen: list[tuple]) -> list[tuple]:
    # the two brokers word "nothing to cancel" differently; everything else must be identical
    return [r[:2] if r[0] == "cancel_rejected" else r for r in seen]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matching_equals_the_simulated_broker_on_the_same_bars_and_orders(open_venue, recorder, seed):
    fm = FillModel(fee_bps=D("2.5"), min_fee=D("1"), slippage_bps=D("3"))
    sim, sim_seen = SimulatedBroker(fm, venue="V"), Recorder()
    sim.bind(sim_seen)
    paper = open_venue(fill_model=fm, venue="V")
    for bars, orders, cancels in _random_session(seed):
        for b in bars:
            sim.on_bar(b)
            paper.on_bar(b)
        for o in orders:
            sim.submit(o)
            paper.submit(o)
        for coid in cancels:
            sim.cancel(coid)
            paper.cancel(coid)
        paper.flush()
    assert len(sim_seen.of("filled")) > 20  # the session really trades
    assert {r[0] for r in sim_seen.seen} >= {"accepted", "filled", "canceled", "expired"}
    assert _comparable(recorder.seen) == _comparable(sim_seen.seen)
    assert paper.working_count == sim.working_count


def test_fills_are_limited_to_the_participation_share_of_each_bars_volume(open_venue, recorder):
    venue = open_venue(participation=0.1)
    venue.on_bar(bar(0, 100, 100, 100, 100, volume=1000))
    venue.submit(make_order("O-1", BUY, 150))
    for i, volume in enumerate([500, 300, 2000, 2000], start=1):
        venue.on_bar(bar(i, 100 + i, 110, 90, 100, volume=volume))
        venue.flush()
    fills = [(r[3], r[4]) for r in recorder.of("filled")]
    assert fills == [(D(50), D(101)), (D(30), D(102)), (D(70), D(103))]  # the market rest at each next open
    assert venue.query("O-1").status is VenueStatus.FILLED
    assert venue.working_count == 0


def test_working_orders_share_a_bars_volume_first_come_first_served(open_venue, recorder):
    venue = open_venue(participation=0.5)
    venue.submit(make_order("O-1", BUY, 40))
    venue.submit(make_order("O-2", SELL, 40))
    venue.on_bar(bar(1, 100, 100, 100, 100, volume=100))  # 50 available: 40 + 10
    venue.flush()
    assert [(r[1], r[3]) for r in recorder.of("filled")] == [("O-1", D(40)), ("O-2", D(10))]
    assert venue.query("O-2").status is VenueStatus.PARTIALLY_FILLED


def test_the_volume_limit_rounds_down_to_the_instrument_lot(open_venue, recorder):
    lots = {"AAPL": Instrument("AAPL", lot_size=D(10))}
    venue = open_venue(participation=0.5, instruments=lots)
    venue.submit(make_order("O-1", BUY, 100))
    venue.on_bar(bar(1, 100, 100, 100, 100, volume=55))  # 27.5 -> 20
    venue.on_bar(bar(2, 100, 100, 100, 100, volume=19))  # 9.5 -> 0
    venue.on_bar(bar(3, 100, 100, 100, 100, volume=7.5))  # 3.75 units, no instrument: whole units would give 3
    venue.flush()
    assert [r[3] for r in recorder.of("filled")] == [D(20)]
    whole = open_venue(path=venue.path.with_name("whole.sqlite"), participation=0.5)
    whole.submit(make_order("W-1", BUY, 100, symbol="MSFT"))
    whole.on_bar(bar(1, 100, 100, 100, 100, volume=7.5, symbol="MSFT"))
    whole.flush()
    assert recorder.of("filled")[-1][1:4] == ("W-1", "PAPER-T1", D(3))


def test_a_partially_filled_limit_order_keeps_its_limit_on_later_bars(open_venue, recorder):
    venue = open_venue(participation=0.5)
    venue.submit(make_order("O-1", BUY, 100, OrderType.LIMIT, price="99"))
    venue.on_bar(bar(1, 100, 101, 98, 100, volume=120))  # touches 99: 60 at the limit
    venue.on_bar(bar(2, 100, 101, 99.5, 100, volume=500))  # never at 99: nothing
    venue.on_bar(bar(3, 98, 99, 97, 98, volume=500))  # opens below: the rest at the open
    venue.flush()
    assert [(r[3], r[4]) for r in recorder.of("filled")] == [(D(60), D(99)), (D(40), D(98))]


def test_a_triggered_stop_fills_its_rest_at_later_opens_with_slippage(open_venue, recorder):
    venue = open_venue(participation=0.5, fill_model=FillModel(slippage_bps=D(10)))
    venue.submit(make_order("O-1", SELL, 100, OrderType.STOP, trigger="95"))
    venue.on_bar(bar(1, 100, 100, 94, 95, volume=100))  # triggers at 95: 50 filled
    venue.on_bar(bar(2, 97, 98, 96, 97, volume=100))  # above the stop again, still a market order now
    venue.flush()
    assert [(r[3], r[4]) for r in recorder.of("filled")] == [(D(50), D("94.9050")), (D(50), D("96.9030"))]


def test_ioc_fills_what_the_bar_allows_and_cancels_the_rest_while_fok_fills_all_or_nothing(open_venue, recorder):
    venue = open_venue(participation=0.5)
    venue.submit(make_order("IOC", BUY, 80, tif=TimeInForce.IOC))
    venue.submit(make_order("FOK", BUY, 80, tif=TimeInForce.FOK, symbol="MSFT"))
    venue.on_bar(bar(1, 100, 100, 100, 100, volume=100))
    venue.on_bar(bar(1, 300, 300, 300, 300, volume=100, symbol="MSFT"))
    venue.flush()
    assert [(r[1], r[3]) for r in recorder.of("filled")] == [("IOC", D(50))]
    assert recorder.of("canceled") == [
        ("canceled", "IOC", "IOC: 30 of 80 not filled on the first bar"),
        ("canceled", "FOK", "FOK: not filled on the first bar"),
    ]
    assert venue.query("IOC").status is VenueStatus.CANCELED
    assert venue.history("IOC").filled_quantity == D(50)


def test_a_partially_filled_day_order_expires_at_the_next_day(open_venue, recorder):
    venue = open_venue(participation=0.5)
    venue.submit(make_order("O-1", BUY, 100, tif=TimeInForce.DAY))
    venue.on_bar(bar(1, 100, 100, 100, 100, volume=60))
    venue.on_bar(bar(1 + DAY_BARS, 100, 100, 100, 100, volume=1000))
    venue.flush()
    assert [r[3] for r in recorder.of("filled")] == [D(30)]
    assert recorder.seen[-1] == ("expired", "O-1")
    record = venue.history("O-1")
    assert (record.status, record.filled_quantity) == (VenueStatus.EXPIRED, D(30))


def test_an_order_is_acknowledged_and_matches_only_after_the_latency(open_venue, recorder):
    venue = open_venue(latency_ms=90_000)  # a minute and a half: bars are a minute apart
    venue.on_bar(bar(0, 100, 100, 100, 100))
    venue.submit(make_order("O-1", BUY, 10))
    venue.on_bar(bar(1, 101, 101, 101, 101))
    venue.flush()
    assert recorder.seen == []
    assert venue.query("O-1").status is VenueStatus.UNKNOWN  # still on its way
    venue.on_bar(bar(2, 102, 102, 102, 102))
    venue.flush()
    assert [r[0] for r in recorder.seen] == ["accepted", "filled"]
    assert recorder.seen[1][4] == D(102)
    assert venue.history("O-1").fills[0].ts == T0 + 2 * MINUTE


def test_the_clock_can_be_advanced_without_a_bar_and_a_cancel_catches_an_order_in_transit(open_venue, recorder):
    venue = open_venue(latency_ms=250)
    venue.advance_to(T0)
    venue.submit(make_order("O-1", BUY, 10))
    venue.submit(make_order("O-2", BUY, 10))
    venue.advance_to(T0 + 249_000_000)
    venue.cancel("O-2")
    venue.advance_to(T0 + 250_000_000)
    venue.flush()
    assert recorder.seen == [
        ("canceled", "O-2", "canceled by request"),
        ("accepted", "O-1", "PAPER-1"),
    ]
    assert venue.history("O-2").acknowledged is False


def test_orders_for_a_rejected_symbol_are_rejected_with_a_reason(open_venue, recorder):
    venue = open_venue(reject_symbols=frozenset({"GME"}))
    venue.submit(make_order("O-1", BUY, 10, symbol="GME"))
    venue.submit(make_order("O-2", BUY, 10))
    venue.flush()
    assert recorder.seen[0] == (
        "rejected",
        "O-1",
        "venue rejected the order: GME is not accepted at this venue (injected reject)",
    )
    answer = venue.query("O-1")
    assert (answer.status, answer.reason) == (VenueStatus.REJECTED, recorder.seen[0][2])
    assert recorder.seen[1][:2] == ("accepted", "O-2")
    venue.on_bar(bar(1, 50, 50, 50, 50, symbol="GME"))
    assert venue.working_count == 1


def test_random_rejects_follow_the_rate_and_the_seed(tmp_path):
    runs = iter(range(100))

    def rejected(seed: int, rate: float) -> set[str]:
        seen = Recorder()
        venue = PaperVenue(tmp_path / f"run-{next(runs)}.sqlite", reject_rate=rate, seed=seed)
        venue.bind(seen)
        for i in range(400):
            venue.submit(make_order(f"O-{i}", BUY, 1))
        venue.flush()
        venue.close()
        return {r[1] for r in seen.of("rejected")}

    a = rejected(7, 0.25)
    assert 60 < len(a) < 140  # 100 expected
    assert rejected(7, 0.25) == a
    assert rejected(8, 0.25) != a
    assert len(rejected(7, 1.0)) == 400 and rejected(7, 0.0) == set()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"participation": 0.0}, "participation must be in"),
        ({"participation": 1.5}, "participation must be in"),
        ({"latency_ms": -1.0}, "latency_ms must be"),
        ({"latency_ms": float("nan")}, "latency_ms must be"),
        ({"reject_rate": 2.0}, "reject_rate must be"),
        ({"venue": ""}, "venue name"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        PaperVenue(tmp_path / "x.sqlite", **kwargs)
