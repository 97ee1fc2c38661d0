"""Average-cost positions: hand-worked cases and an exact reference checked on random fills."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import event, given, settings
from hypothesis import strategies as st

from qlcore.model.positions import Position

D = Decimal
TOLERANCE = Fraction(1, 10**18)


def position(*fills: tuple[int | str, str], fee: str = "0") -> Position:
    pos = Position("strat", "AAPL")
    for qty, price in fills:
        pos.apply_fill(D(qty), D(price), D(fee))
    return pos


def test_open_long_sets_quantity_cost_and_average_price():
    pos = position((10, "100.00"))
    assert pos.quantity == D(10)
    assert pos.cost == D("1000.00")
    assert pos.avg_price == D(100)
    assert pos.realized_pnl == D(0)
    assert not pos.is_flat


def test_adding_at_another_price_averages_the_cost():
    pos = position((10, "100.00"), (30, "104.00"))
    assert pos.quantity == D(40)
    assert pos.cost == D("4120.00")
    assert pos.avg_price == D(103)
    assert pos.realized_pnl == D(0)


def test_partial_close_realizes_against_the_average_price_and_keeps_it():
    pos = position((10, "100.00"), (10, "102.00"))  # average 101
    realized = pos.apply_fill(D(-5), D("110.00"))
    assert realized == D(45)
    assert pos.realized_pnl == D(45)
    assert pos.quantity == D(15)
    assert pos.cost == D(1515)
    assert pos.avg_price == D(101)


def test_full_close_brings_cost_back_to_exactly_zero_after_a_rounded_partial_close():
    # an average of 100.666... cannot be held exactly, so the partial close rounds the cost
    pos = position((1, "100.00"), (2, "101.00"))
    pos.apply_fill(D(-1), D("102.00"))
    assert pos.cost != pos.cost.quantize(D("0.01"))  # the remaining cost carries 28-digit rounding
    pos.apply_fill(D(-2), D("102.00"))
    assert pos.is_flat
    assert pos.quantity == D(0)
    assert pos.cost == D(0)
    assert pos.avg_price is None
    # the full close removes the whole remaining cost, so the total is exact: 3 x 102 - 302
    assert pos.realized_pnl == D(4)
    assert pos.unrealized_pnl(D("999")) == D(0)


def test_flip_from_long_to_short_in_one_fill_realizes_the_long_and_opens_the_rest():
    pos = position((10, "100.00"))
    realized = pos.apply_fill(D(-15), D("110.00"))
    assert realized == D(100)
    assert pos.quantity == D(-5)
    assert pos.cost == D("-550.00")
    assert pos.avg_price == D(110)
    assert pos.realized_pnl == D(100)


def test_flip_from_short_to_long_in_one_fill():
    pos = position((-4, "50.00"))
    realized = pos.apply_fill(D(6), D("45.00"))
    assert realized == D(20)
    assert pos.quantity == D(2)
    assert pos.avg_price == D(45)


def test_short_open_and_cover_realizes_gains_and_losses():
    pos = position((-10, "50.00"))
    assert pos.quantity == D(-10)
    assert pos.cost == D("-500.00")
    assert pos.avg_price == D(50)
    assert pos.unrealized_pnl(D("48.00")) == D(20)
    assert pos.apply_fill(D(4), D("45.00")) == D(20)  # cover below the short price: gain
    assert pos.apply_fill(D(6), D("55.00")) == D(-30)  # cover above: loss
    assert pos.realized_pnl == D(-10)
    assert pos.is_flat
    assert pos.cost == D(0)


def test_fees_are_kept_apart_from_realized_pnl():
    pos = Position("strat", "AAPL")
    pos.apply_fill(D(10), D("100.00"), D("1.25"))
    pos.apply_fill(D(-10), D("101.00"), D("1.30"))
    assert pos.realized_pnl == D(10)
    assert pos.fees == D("2.55")
    assert pos.trades == 2


def test_unrealized_and_market_value_at_a_mark():
    pos = position((10, "100.00"), (10, "102.00"))
    assert pos.market_value(D("103.50")) == D(2070)
    assert pos.unrealized_pnl(D("103.50")) == D(50)


# --- random fills against an exact reference -----------------------------------------------------


def sign(x: int) -> int:
    return (x > 0) - (x < 0)


def reference(fills: list[tuple[int, Decimal]]) -> tuple[int, Fraction, Fraction, bool]:
    """Average-cost accounting with exact fractions, written from the rules rather than the code.

    Returns (quantity, average price, realized P&L, whether any fill closed part of a position).
    """
    qty, avg, realized, partial = 0, Fraction(0), Fraction(0), False
    for signed, price in fills:
        px = Fraction(price)
        if qty and signed and sign(signed) != sign(qty):
            closing = min(abs(signed), abs(qty))
            partial |= closing < abs(qty)
            realized += closing * (px - avg) * sign(qty)
            qty += closing * sign(signed)
            signed -= closing * sign(signed)
            if not qty:
                avg = Fraction(0)
        if signed:
            # opening or adding (qty is now 0 or has the fill's sign)
            avg = (avg * abs(qty) + px * abs(signed)) / (abs(qty) + abs(signed))
            qty += signed
    return qty, avg, realized, partial


prices = st.decimals(min_value=D("0.01"), max_value=D("1000.00"), places=2)
fills_strategy = st.lists(
    st.tuples(st.integers(min_value=-100, max_value=100), prices), max_size=25
)


@settings(max_examples=200, deadline=None)
@given(fills=fills_strategy, mark=prices)
def test_random_fills_match_the_exact_average_cost_reference(fills, mark):
    pos = Position("strat", "AAPL")
    returned = D(0)
    for signed, price in fills:
        returned += pos.apply_fill(D(signed), price)

    qty, avg, realized, partial = reference(fills)
    event(f"partial close: {partial}; flat at the end: {qty == 0}")
    assert pos.quantity == qty
    assert pos.is_flat == (qty == 0)
    if partial:
        assert abs(Fraction(pos.realized_pnl) - realized) <= TOLERANCE
        assert abs(Fraction(pos.cost) - qty * avg) <= TOLERANCE
    else:
        assert Fraction(pos.realized_pnl) == realized
        assert Fraction(pos.cost) == qty * avg
    assert pos.realized_pnl == returned
    if qty == 0:
        assert pos.cost == 0
        assert pos.avg_price is None
    else:
        assert abs(Fraction(pos.avg_price) - avg) <= TOLERANCE

    # conservation: the cash the fills paid plus what is held, at the mark, is the whole P&L
    cash_flows = sum((-Fraction(signed) * Fraction(price) for signed, price in fills), Fraction(0))
    held = Fraction(pos.quantity) * Fraction(mark)
    total_pnl = Fraction(pos.realized_pnl) + Fraction(pos.unrealized_pnl(mark))
    assert abs(cash_flows + held - total_pnl) <= TOLERANCE
