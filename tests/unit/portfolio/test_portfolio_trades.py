"""Round-trip trades from fills."""
from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from qlcore.events.types import OrderFilled
from qlcore.model.enums import OrderSide
from qlcore.portfolio.trades import TRADE_COLUMNS, round_trips

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def fill(ts: int, side: OrderSide, qty: int, price: str, fee: str = "0", symbol: str = "X") -> OrderFilled:
    return OrderFilled(ts, f"O{ts}", f"T{ts}", "s", symbol, side, D(qty), D(price), D(fee))


def test_long_round_trip_with_scale_in_and_fees():
    trades = round_trips([fill(1, BUY, 10, "10"), fill(2, BUY, 10, "12"), fill(3, SELL, 20, "13", fee="2")])
    assert list(trades.columns) == TRADE_COLUMNS
    (t,) = trades.to_dict("records")
    assert t["side"] == "LONG" and t["closed"]
    assert t["quantity"] == 20 and t["entry_price"] == 11 and t["exit_price"] == 13
    assert t["pnl"] == pytest.approx(40 - 2) and t["fees"] == 2
    assert t["entry_ts"] == pd.Timestamp(1) and t["exit_ts"] == pd.Timestamp(3)


def test_a_flip_closes_one_trade_and_opens_the_opposite_with_the_fee_split():
    trades = round_trips([fill(1, BUY, 10, "10"), fill(2, SELL, 30, "12", fee="3"), fill(3, BUY, 20, "11")])
    long, short = trades.to_dict("records")
    assert (long["side"], long["pnl"], long["fees"]) == ("LONG", pytest.approx(20 - 1), 1)
    assert (short["side"], short["quantity"], short["entry_price"], short["exit_price"]) == ("SHORT", 20, 12, 11)
    assert short["pnl"] == pytest.approx(20 - 2) and short["closed"]


def test_open_trade_is_marked_at_the_last_price():
    trades = round_trips([fill(1, BUY, 5, "10", fee="1")], marks={"X": D("12")})
    (t,) = trades.to_dict("records")
    assert not t["closed"] and t["exit_price"] == 12 and t["pnl"] == pytest.approx(10 - 1)


def test_symbols_are_tracked_apart():
    trades = round_trips([fill(1, BUY, 1, "10", symbol="A"), fill(2, BUY, 1, "20", symbol="B"), fill(3, SELL, 1, "11", symbol="A")], marks={"B": D(21)})
    assert trades[["symbol", "closed", "pnl"]].values.tolist() == [["A", True, 1.0], ["B", False, 1.0]]
