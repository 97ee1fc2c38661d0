"""TradingState as a fold over events: cash, positions, fees, equity and the state hash."""
from __future__ import annotations

from decimal import Decimal

import pytest

from qlcore.events.types import (
    AccountFunded,
    Event,
    MarksUpdated,
    OrderAccepted,
    OrderFilled,
    OrderInitialized,
    OrderSubmitted,
    RunFinished,
    RunStarted,
)
from qlcore.model.enums import OrderSide, OrderStatus, OrderType
from qlcore.model.state import TradingState, UnknownOrderError

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def order_events(
    oid: str, side: OrderSide, qty: str, price: str, fee: str, ts: int, symbol: str = "AAPL"
) -> list[Event]:
    """An order's events from initialization to one complete fill."""
    return [
        OrderInitialized(ts, oid, "strat", symbol, side, OrderType.MARKET, D(qty)),
        OrderSubmitted(ts + 1, oid),
        OrderAccepted(ts + 2, oid, f"V-{oid}"),
        OrderFilled(ts + 3, oid, f"T-{oid}", "strat", symbol, side, D(qty), D(price), D(fee)),
    ]


def session(buy_price: str = "101.25", funding: str = "10000") -> list[Event]:
    return [
        RunStarted(0, "run-1", "backtest"),
        AccountFunded(1, "main", D(funding)),
        *order_events("O-1", BUY, "10", buy_price, "0.50", ts=10),
        *order_events("O-2", SELL, "4", "103.10", "0.25", ts=20),
        MarksUpdated(30, (("AAPL", D("102.00")),)),
    ]


def test_funding_buy_and_sell_give_exact_cash_position_fees_and_equity():
    state = TradingState().apply_all(session())

    # 10000 - 10 x 101.25 - 0.50 + 4 x 103.10 - 0.25
    assert state.cash == D("9399.15")
    assert state.fees == D("0.75")
    assert state.position("strat", "AAPL") == D(6)
    assert state.net_position("AAPL") == D(6)
    assert state.position("strat", "MSFT") == D(0)
    assert state.realized_pnl() == D("7.40")  # 4 x (103.10 - 101.25)
    pos = state.positions[("strat", "AAPL")]
    assert pos.avg_price == D("101.25")
    assert pos.fees == D("0.75")
    # equity at the stored mark: 9399.15 + 6 x 102
    assert state.equity() == D("10011.15")
    # and at marks passed in
    assert state.equity({"AAPL": D("100.00")}) == D("9999.15")
    # P&L identity: realized + unrealized - fees
    assert state.equity() - D(10000) == D("7.40") + 6 * (D("102.00") - D("101.25")) - D("0.75")
    assert state.orders["O-1"].status is OrderStatus.FILLED
    assert state.open_orders() == []
    assert state.events_applied == len(session())


def test_equity_without_a_mark_for_an_open_position_raises_naming_the_symbol():
    events = [AccountFunded(1, "main", D(1000)), *order_events("O-1", BUY, "1", "5", "0", ts=2)]
    state = TradingState().apply_all(events)
    with pytest.raises(KeyError, match="AAPL"):
        state.equity()


def test_same_events_on_two_fresh_states_give_the_same_hash():
    a = TradingState().apply_all(session())
    b = TradingState().apply_all(session())
    assert a.state_hash() == b.state_hash()
    assert len(a.state_hash()) == 64


def test_one_fill_price_differing_by_a_cent_gives_a_different_hash():
    a = TradingState().apply_all(session(buy_price="101.25"))
    b = TradingState().apply_all(session(buy_price="101.26"))
    assert a.state_hash() != b.state_hash()


def test_a_different_mark_gives_a_different_hash():
    a = TradingState().apply_all(session())
    b = TradingState().apply_all(session())
    b.apply(MarksUpdated(40, (("AAPL", D("102.01")),)))
    assert a.state_hash() != b.state_hash()


def test_an_order_status_change_alone_changes_the_hash():
    events = [OrderInitialized(1, "O-1", "strat", "AAPL", BUY, OrderType.LIMIT, D(1), D(5))]
    a = TradingState().apply_all(events)
    b = TradingState().apply_all([*events, OrderSubmitted(2, "O-1")])
    assert a.state_hash() != b.state_hash()


def test_equal_decimals_with_different_exponents_hash_the_same():
    a = TradingState().apply_all(session(buy_price="101.25", funding="10000.0"))
    b = TradingState().apply_all(session(buy_price="101.2500", funding="10000.00"))
    assert a.cash == b.cash
    assert str(a.cash) != str(b.cash)  # the exponents really differ
    assert a.state_hash() == b.state_hash()


def test_funding_of_ten_point_zero_and_ten_point_zero_zero_hash_the_same():
    a = TradingState().apply_all([AccountFunded(1, "main", D("10.0"))])
    b = TradingState().apply_all([AccountFunded(1, "main", D("10.00"))])
    c = TradingState().apply_all([AccountFunded(1, "main", D("10.01"))])
    assert a.state_hash() == b.state_hash()
    assert a.state_hash() != c.state_hash()


@pytest.mark.parametrize(
    "event",
    [
        OrderSubmitted(1, "ghost"),
        OrderAccepted(1, "ghost", "V-1"),
        OrderFilled(1, "ghost", "T-1", "strat", "AAPL", BUY, D(1), D(5), D(0)),
    ],
    ids=lambda e: type(e).__name__,
)
def test_event_for_an_unknown_order_raises_naming_it(event):
    state = TradingState().apply_all([AccountFunded(0, "main", D(100))])
    before = state.state_hash()
    with pytest.raises(UnknownOrderError, match="ghost") as info:
        state.apply(event)
    assert info.value.order_id == "ghost"
    assert type(event).__name__ in str(info.value)
    assert state.state_hash() == before
    assert state.positions == {}


def test_initializing_the_same_order_id_twice_raises():
    init = OrderInitialized(1, "O-1", "strat", "AAPL", BUY, OrderType.MARKET, D(1))
    state = TradingState().apply_all([init])
    with pytest.raises(ValueError, match="O-1"):
        state.apply(init)


def test_repeated_fill_changes_neither_cash_nor_position():
    events = [
        AccountFunded(1, "main", D(10000)),
        *order_events("O-1", BUY, "10", "101.25", "0.50", ts=10),
    ]
    state = TradingState().apply_all(events)
    before = (state.cash, state.fees, state.position("strat", "AAPL"), state.state_hash())
    applied = state.events_applied

    assert state.apply(events[-1]) is False

    assert (state.cash, state.fees, state.position("strat", "AAPL"), state.state_hash()) == before
    assert state.cash == D("8987.00")
    assert state.positions[("strat", "AAPL")].trades == 1
    assert state.events_applied == applied


def test_partial_fills_of_one_order_with_distinct_trade_ids_both_count():
    init = OrderInitialized(1, "O-1", "strat", "AAPL", BUY, OrderType.MARKET, D(10))
    fills = [
        OrderFilled(3, "O-1", trade_id, "strat", "AAPL", BUY, D(5), D(price), D(0))
        for trade_id, price in (("T-1", "100"), ("T-2", "102"))
    ]
    state = TradingState().apply_all([init, OrderSubmitted(2, "O-1"), *fills])
    assert state.cash == D(-1010)
    assert state.position("strat", "AAPL") == D(10)
    assert state.orders["O-1"].avg_fill_price == D(101)


def test_run_markers_change_nothing_but_unknown_event_types_raise():
    state = TradingState()
    empty = state.state_hash()
    state.apply(RunStarted(0, "run-1", "backtest"))
    state.apply(RunFinished(9, "run-1", "abc"))
    assert state.state_hash() == empty

    class Foreign(Event):
        pass

    with pytest.raises(TypeError, match="Foreign"):
        state.apply(Foreign())
