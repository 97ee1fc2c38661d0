"""Fills on arrival: the paper engine's live-like mode, next to the backtest convention."""
from __future__ import annotations

from decimal import Decimal

from paper_venue_support import Recorder, VenueOpener, bar, make_order

from qlcore.model.enums import OrderSide, OrderType, TimeInForce


def _fills(recorder: Recorder) -> list[tuple]:
    return [r for r in recorder.seen if r[0] == "filled"]


def test_a_market_order_fills_on_arrival_at_the_last_close(tmp_path):
    recorder = Recorder()
    with VenueOpener(tmp_path / "v.sqlite", recorder) as open_venue:
        venue = open_venue(fill_on_arrival=True)
        venue.on_bar(bar(0, 10.0, 11.0, 9.0, 10.5))
        venue.submit(make_order("o1", OrderSide.BUY, 30))
        venue.advance_to(venue.clock)
        venue.flush()
        fills = _fills(recorder)
        assert len(fills) == 1
        _, order_id, _trade, quantity, price, _fee = fills[0]
        assert (order_id, quantity, price) == ("o1", Decimal(30), Decimal("10.5"))
        assert venue.working_count == 0


def test_without_a_last_bar_or_in_backtest_mode_the_order_waits_for_the_next_open(tmp_path):
    for arrival in (True, False):
        recorder = Recorder()
        with VenueOpener(tmp_path / f"v{arrival}.sqlite", recorder) as open_venue:
            venue = open_venue(fill_on_arrival=arrival)
            if not arrival:
                venue.on_bar(bar(0, 10.0, 11.0, 9.0, 10.5))
            venue.submit(make_order("o1", OrderSide.BUY, 30))
            venue.flush()
            assert _fills(recorder) == [] and venue.working_count == 1
            venue.on_bar(bar(1, 12.0, 12.5, 11.0, 12.2))
            venue.flush()
            assert [(f[1], f[4]) for f in _fills(recorder)] == [("o1", Decimal("12"))]


def test_on_arrival_a_limit_away_from_the_market_works_and_an_ioc_is_cancelled(tmp_path):
    recorder = Recorder()
    with VenueOpener(tmp_path / "v.sqlite", recorder) as open_venue:
        venue = open_venue(fill_on_arrival=True, participation=0.5)
        venue.on_bar(bar(0, 10.0, 11.0, 9.0, 10.0, volume=100))
        venue.submit(make_order("away", OrderSide.BUY, 10, OrderType.LIMIT, price="9.5"))
        venue.submit(make_order("ioc", OrderSide.BUY, 80, OrderType.LIMIT, price="10.2", tif=TimeInForce.IOC))
        venue.flush()
        assert [(f[1], f[3]) for f in _fills(recorder)] == [("ioc", Decimal(50))]  # half the last bar's volume
        assert ("canceled", "ioc") in [r[:2] for r in recorder.seen]
        assert venue.working_count == 1  # the limit below the market keeps working
