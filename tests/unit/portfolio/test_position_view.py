"""The read-only position view: by strategy, by instrument (netted), per strategy and for the account."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qlcore.events.types import (
    AccountFunded,
    Event,
    OrderAccepted,
    OrderFilled,
    OrderInitialized,
    OrderSubmitted,
)
from qlcore.model.enums import OrderSide, OrderType
from qlcore.model.state import TradingState
from qlcore.portfolio.positions import position_view

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL


class Book:
    """A TradingState fed through real order events, one complete fill per order."""

    def __init__(self, cash: str = "100000") -> None:
        self.state = TradingState()
        self.state.apply(AccountFunded(0, "main", D(cash)))
        self.n = 0

    def fill(self, strategy: str, symbol: str, side: OrderSide, qty: str, price: str, fee: str = "0") -> None:
        self.n += 1
        oid, ts = f"O-{self.n}", self.n * 10
        events: list[Event] = [
            OrderInitialized(ts, oid, strategy, symbol, side, OrderType.MARKET, D(qty)),
            OrderSubmitted(ts + 1, oid),
            OrderAccepted(ts + 2, oid, f"V-{oid}"),
            OrderFilled(ts + 3, oid, f"T-{oid}", strategy, symbol, side, D(qty), D(price), D(fee)),
        ]
        self.state.apply_all(events)


@pytest.fixture
def desk() -> Book:
    book = Book()
    book.fill("A", "AAPL", BUY, "10", "100", "1")
    book.fill("A", "AAPL", SELL, "4", "110", "1")  # realizes 4 x 10 = 40
    book.fill("B", "AAPL", SELL, "5", "120", "1")
    book.fill("A", "MSFT", BUY, "3", "200", "1")
    return book


MARKS = {"AAPL": D(105), "MSFT": D(190)}


def test_strategy_lines_have_hand_computed_values(desk):
    view = position_view(desk.state, MARKS)
    lines = {(p.strategy_id, p.symbol): p for p in view.by_strategy}
    a = lines[("A", "AAPL")]
    assert (a.quantity, a.avg_price, a.cost) == (D(6), D(100), D(600))
    assert (a.market_value, a.unrealized_pnl, a.realized_pnl, a.fees) == (D(630), D(30), D(40), D(2))
    b = lines[("B", "AAPL")]  # short 5 at 120, marked at 105
    assert (b.quantity, b.avg_price, b.market_value, b.unrealized_pnl) == (D(-5), D(120), D(-525), D(75))
    m = lines[("A", "MSFT")]
    assert (m.quantity, m.market_value, m.unrealized_pnl) == (D(3), D(570), D(-30))


def test_instrument_lines_net_across_strategies_keeping_the_average_cost_of_the_remaining_side(desk):
    view = position_view(desk.state, MARKS)
    aapl = next(p for p in view.by_instrument if p.symbol == "AAPL")
    # 6 long at 100 (A) against 5 short at 120 (B): 1 long left at 100; 5 crossed lock in 5 x 20
    assert aapl.strategy_id is None
    assert (aapl.quantity, aapl.avg_price, aapl.cost) == (D(1), D(100), D(100))
    assert (aapl.market_value, aapl.unrealized_pnl, aapl.crossed_pnl) == (D(105), D(5), D(100))
    assert aapl.unrealized_pnl + aapl.crossed_pnl == D(30) + D(75)  # the strategies' unrealized
    assert (aapl.realized_pnl, aapl.fees) == (D(40), D(3))


def test_the_net_position_can_be_short_or_flat(desk):
    desk.fill("C", "AAPL", SELL, "3", "130")  # shorts now 8: 5 at 120, 3 at 130 -> avg 123.75
    view = position_view(desk.state, MARKS)
    aapl = next(p for p in view.by_instrument if p.symbol == "AAPL")
    assert (aapl.quantity, aapl.avg_price, aapl.cost) == (D(-2), D("123.75"), D("-247.5"))
    assert aapl.crossed_pnl == D(6) * (D("123.75") - D(100))
    desk.fill("D", "AAPL", BUY, "2", "100")
    flat = next(p for p in position_view(desk.state, MARKS).by_instrument if p.symbol == "AAPL")
    assert (flat.quantity, flat.avg_price, flat.market_value, flat.unrealized_pnl) == (D(0), None, D(0), D(0))
    assert flat.crossed_pnl == D(8) * (D("123.75") - D(100))


def test_a_short_strategy_position_reduced_at_a_lower_price_realizes_a_gain():
    book = Book()
    book.fill("C", "XOM", SELL, "10", "50")
    book.fill("C", "XOM", BUY, "4", "40")
    (line,) = position_view(book.state, {"XOM": D(45)}).by_strategy
    assert (line.quantity, line.avg_price, line.realized_pnl) == (D(-6), D(50), D(40))
    assert (line.market_value, line.unrealized_pnl) == (D(-270), D(30))


def test_account_totals_match_the_trading_state_and_hand_computed_values(desk):
    view = position_view(desk.state, MARKS)
    acc = view.account
    assert acc.cash == D(100000) - 1000 + 440 + 600 - 600 - 4 == desk.state.cash
    assert acc.market_value == D(630 - 525 + 570) == desk.state.market_value(MARKS)
    assert acc.equity == desk.state.equity(MARKS) == D(100111)
    assert (acc.unrealized_pnl, acc.realized_pnl, acc.fees) == (D(75), D(40), D(4))
    assert (acc.gross_exposure, acc.net_exposure) == (D(105 + 570), D(675))
    assert acc.buying_power == D(100111) - D(675)
    assert position_view(desk.state, MARKS, leverage=2).account.buying_power == D(200222) - D(675)


def test_per_strategy_totals_sum_their_positions(desk):
    totals = {s.strategy_id: s for s in position_view(desk.state, MARKS).strategies}
    a, b = totals["A"], totals["B"]
    assert (a.positions, a.market_value, a.unrealized_pnl, a.realized_pnl, a.fees) == (2, D(1200), D(0), D(40), D(3))
    assert (a.gross_exposure, a.net_exposure) == (D(1200), D(1200))
    assert (b.positions, b.gross_exposure, b.net_exposure, b.unrealized_pnl) == (1, D(525), D(-525), D(75))


def test_buying_power_never_goes_below_zero():
    book = Book(cash="1000")
    book.fill("A", "AAPL", BUY, "100", "100")  # cash -9000, holding 10000
    acc = position_view(book.state, {"AAPL": D(50)}).account
    assert (acc.equity, acc.gross_exposure, acc.buying_power) == (D(-4000), D(5000), D(0))


def test_the_state_marks_are_used_by_default_and_a_missing_mark_is_named(desk):
    desk.state.marks.update(MARKS)
    assert position_view(desk.state) == position_view(desk.state, MARKS)
    with pytest.raises(ValueError, match="no mark price for MSFT: A holds 3"):
        position_view(desk.state, {"AAPL": D(105)})
    with pytest.raises(ValueError, match="leverage must be > 0"):
        position_view(desk.state, MARKS, leverage=0)


def test_rows_are_json_ready_with_decimals_as_strings(desk):
    rows = position_view(desk.state, MARKS).to_rows()
    back = json.loads(json.dumps(rows))
    assert back["account"]["equity"] == "100111"
    assert back["account"]["buying_power"] == "99436"
    aapl = next(r for r in back["by_instrument"] if r["symbol"] == "AAPL")
    assert (aapl["strategy_id"], aapl["quantity"], aapl["crossed_pnl"]) == (None, "1", "100")
    flat_avg = [r["avg_price"] for r in back["by_strategy"]]
    assert all(a is None or isinstance(a, str) for a in flat_avg)
    assert {r["strategy_id"] for r in back["strategies"]} == {"A", "B"}


_fill = st.tuples(
    st.sampled_from(["A", "B", "C"]),
    st.sampled_from(["AAPL", "MSFT"]),
    st.sampled_from([BUY, SELL]),
    st.integers(1, 50),
    st.integers(50, 150),
)


@settings(max_examples=60, deadline=None)
@given(fills=st.lists(_fill, max_size=25), mark_a=st.integers(40, 160), mark_m=st.integers(40, 160))
# found with random seeds: partial closes at average costs of 28 digits, whose sums rounded apart
@example(fills=[("A", "AAPL", BUY, 1, 50)] * 5 + [
    ("A", "AAPL", BUY, 1, 51), ("A", "MSFT", BUY, 14, 106), ("A", "AAPL", SELL, 1, 79), ("C", "MSFT", SELL, 6, 143),
    ("B", "MSFT", SELL, 1, 115), ("A", "MSFT", BUY, 5, 141), ("A", "MSFT", SELL, 1, 51), ("B", "MSFT", BUY, 5, 150),
    ("C", "MSFT", SELL, 1, 53), ("C", "MSFT", SELL, 1, 58)], mark_a=83, mark_m=54)
def test_random_books_reconcile_instrument_strategy_and_account_views(fills, mark_a, mark_m):
    book = Book()
    for strategy, symbol, side, qty, price in fills:
        book.fill(strategy, symbol, side, str(qty), str(price), "0.5")
    marks = {"AAPL": D(mark_a), "MSFT": D(mark_m)}
    view = position_view(book.state, marks)
    assert view.account.equity == book.state.equity(marks)
    for inst in view.by_instrument:
        strategies = [p for p in view.by_strategy if p.symbol == inst.symbol]
        assert inst.quantity == sum((p.quantity for p in strategies), D(0)) == book.state.net_position(inst.symbol)
        pnl = sum((p.unrealized_pnl for p in strategies), D(0))
        assert inst.unrealized_pnl + inst.crossed_pnl == pnl
        assert inst.realized_pnl == sum((p.realized_pnl for p in strategies), D(0))
    # exactly, not to the last digits: the view's P&L figures sit on one quantum, so sums never round
    assert view.account.unrealized_pnl + view.account.realized_pnl == sum(
        (p.unrealized_pnl + p.realized_pnl for p in view.by_strategy), D(0)
    )
    assert view.account.unrealized_pnl + view.account.realized_pnl == sum(
        (s.unrealized_pnl + s.realized_pnl for s in view.strategies), D(0)
    )
    assert view.account.buying_power == max(D(0), view.account.equity - view.account.gross_exposure)
