"""The backtest kernel and the simulated broker: fill conventions, costs, time in force, determinism."""
from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.events.types import OrderDenied, OrderFilled
from qlcore.model.enums import OrderStatus, TimeInForce
from qlcore.model.instruments import Instrument
from qlcore.model.orders import Order
from qlcore.model.state import TradingState
from qlcore.risk.chain import RiskSettings
from qlcore.strategies import Strategy

D = Decimal


def bars(rows: list[tuple[float, float, float, float]], start: str = "2024-01-01", freq: str = "D", symbol: str = "XYZ") -> pd.DataFrame:
    """A canonical bar frame from (open, high, low, close) rows."""
    idx = pd.date_range(start, periods=len(rows), freq=freq, name="ts")
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=idx, dtype=float)
    df["volume"] = 1000.0
    df.attrs["symbol"] = symbol
    return df


class Script(Strategy):
    """Places the orders given per bar index: {bar_index: [dict(side=..., qty=..., limit=..., stop=..., tif=...)]}."""

    name = "script"

    def __init__(self, plan: dict[int, list[dict]], **kw) -> None:
        super().__init__(**kw)
        self.plan = plan
        self.i = -1
        self.order_ids: list[str] = []
        self.fills: list[OrderFilled] = []

    def on_bar(self, bar) -> None:
        self.i += 1
        for spec in self.plan.get(self.i, []):
            spec = dict(spec)
            side = spec.pop("side")
            qty = spec.pop("qty")
            fn = self.buy if side == "BUY" else self.sell
            self.order_ids.append(fn(qty, **spec))

    def on_fill(self, fill: OrderFilled) -> None:
        self.fills.append(fill)


def run(df, plan, config=None, **engine_kw):
    strat = Script(plan)
    eng = BacktestEngine(config or BacktestConfig(), **engine_kw)
    eng.add_strategy(strat)
    result = eng.run(df)
    return strat, result


BARS = [
    (10.0, 11.0, 9.0, 10.5),   # 0
    (10.6, 12.0, 10.2, 11.5),  # 1
    (11.4, 11.8, 10.8, 11.0),  # 2
    (13.0, 13.5, 12.5, 13.2),  # 3 gaps up
    (12.0, 12.4, 9.5, 10.0),   # 4
]


def test_market_order_fills_at_next_bar_open():
    strat, result = run(bars(BARS), {0: [dict(side="BUY", qty=10)]})
    (fill,) = strat.fills
    assert fill.price == D("10.6")
    assert fill.ts == pd.Timestamp("2024-01-02").value
    assert result.final_cash == D(100_000) - D("106")
    assert result.final_equity == result.final_cash + 10 * D("10.0")


def test_order_on_last_bar_never_fills():
    strat, result = run(bars(BARS), {4: [dict(side="BUY", qty=5)]})
    assert strat.fills == []
    assert result.orders["status"].tolist() == ["ACCEPTED"]


@pytest.mark.parametrize(
    "limit, expected_price, expected_bar",
    [
        (D("10.70"), D("10.6"), 1),   # open below the limit: fills at the (better) open
        (D("10.30"), D("10.30"), 1),  # trades through the limit intrabar: fills at the limit
        (D("10.90"), D("10.6"), 1),
        (D("9.60"), D("9.60"), 4),    # rests until bar 4's low reaches it
    ],
)
def test_buy_limit_fills_at_open_or_limit(limit, expected_price, expected_bar):
    strat, _ = run(bars(BARS), {0: [dict(side="BUY", qty=1, limit=limit)]})
    (fill,) = strat.fills
    assert fill.price == expected_price
    assert fill.ts == bars(BARS).index[expected_bar].value


def test_sell_limit_gap_up_fills_at_the_better_open():
    strat, _ = run(bars(BARS), {2: [dict(side="SELL", qty=1, limit=D("12.00"))]})
    (fill,) = strat.fills
    assert fill.price == D("13.0")  # bar 3 opened above the limit


@pytest.mark.parametrize(
    "side, stop, expected_price, expected_bar",
    [
        ("BUY", D("11.90"), D("11.90"), 1),  # high crosses the stop: fills at the stop
        ("BUY", D("12.80"), D("13.0"), 3),   # gap over the stop: fills at the (worse) open
        ("SELL", D("10.00"), D("10.00"), 4),  # low crosses the stop on bar 4
    ],
)
def test_stop_orders_trigger_on_range_with_gap_at_open(side, stop, expected_price, expected_bar):
    strat, _ = run(bars(BARS), {0: [dict(side=side, qty=1, stop=stop)]})
    (fill,) = strat.fills
    assert fill.price == expected_price
    assert fill.ts == bars(BARS).index[expected_bar].value


def test_stop_limit_fills_at_trigger_when_within_limit_and_rests_when_gapped_past_it():
    strat, _ = run(bars(BARS), {0: [dict(side="BUY", qty=1, stop=D("11.90"), limit=D("12.00"))]})
    assert [f.price for f in strat.fills] == [D("11.90")]
    # bar 3 gaps to 13.0 over stop 12.50 and limit 12.60: no fill on bar 3; bar 4 (low 9.5) fills at the open 12.0
    strat, _ = run(bars(BARS), {2: [dict(side="BUY", qty=1, stop=D("12.50"), limit=D("12.60"))]})
    (fill,) = strat.fills
    assert fill.price == D("12.0") and fill.ts == bars(BARS).index[4].value


def test_fees_in_bps_with_minimum_per_order():
    cfg = BacktestConfig(fee_bps=D(10), min_fee=D("1.00"))
    strat, result = run(bars(BARS), {0: [dict(side="BUY", qty=100)], 1: [dict(side="SELL", qty=1)]}, cfg)
    big, small = strat.fills
    assert big.fee == D("100") * D("10.6") * D("0.001")  # 1.06: above the minimum
    assert small.fee == D("1.00")  # 0.0114 lifted to the minimum
    assert result.final_cash == D(100_000) - D("1060") - big.fee + D("11.4") - small.fee


def test_slippage_moves_market_fills_against_the_order_but_not_limit_fills():
    cfg = BacktestConfig(slippage_bps=D(50))
    strat, _ = run(bars(BARS), {0: [dict(side="BUY", qty=1), dict(side="SELL", qty=1, limit=D("10.50"))]}, cfg)
    buy, sell = strat.fills
    assert buy.price == D("10.6") * D("1.005")
    assert sell.price == D("10.6")  # limit fills get the open or better, no slippage


def test_day_order_expires_after_its_first_day_and_ioc_is_cancelled_after_one_bar():
    strat, result = run(
        bars(BARS),
        {0: [dict(side="BUY", qty=1, limit=D("5.00"), tif=TimeInForce.DAY), dict(side="BUY", qty=1, limit=D("5.00"), tif=TimeInForce.IOC)]},
    )
    assert strat.fills == []
    status = dict(zip(result.orders["order_id"], result.orders["status"], strict=False))
    assert status == {strat.order_ids[0]: "EXPIRED", strat.order_ids[1]: "CANCELED"}


def test_intraday_day_order_lives_until_the_date_changes():
    rows = [(10, 10.5, 9.5, 10)] * 3 + [(10, 10.5, 8.0, 9)]  # 3 bars on day 1, then day 2 reaches 8.0
    df = bars(rows, start="2024-01-01 15:57", freq="1min")
    df.index = pd.DatetimeIndex([*list(df.index[:3]), pd.Timestamp("2024-01-02 09:30")], name="ts")
    strat, result = run(df, {0: [dict(side="BUY", qty=1, limit=D("8.00"), tif=TimeInForce.DAY)]})
    assert strat.fills == [] and result.orders["status"].tolist() == ["EXPIRED"]
    strat, _ = run(df, {0: [dict(side="BUY", qty=1, limit=D("8.00"), tif=TimeInForce.GTC)]})
    assert [f.price for f in strat.fills] == [D("8.00")]


def test_invalid_orders_are_denied_with_the_field_and_value():
    inst = {"XYZ": Instrument("XYZ", lot_size=D(10), tick_size=D("0.05"))}
    strat, result = run(
        bars(BARS),
        {0: [dict(side="BUY", qty=15), dict(side="BUY", qty=10, limit=D("10.03")), dict(side="BUY", qty=0)]},
        instruments=inst,
    )
    reasons = result.orders.set_index("order_id")["reason"]
    assert result.orders["status"].tolist() == ["DENIED"] * 3
    assert "not a multiple of lot size 10" in reasons[strat.order_ids[0]]
    assert "10.03 is not a positive multiple of tick size 0.05" in reasons[strat.order_ids[1]]
    assert "must be > 0" in reasons[strat.order_ids[2]]
    assert strat.fills == []


class MaxQty:
    def __init__(self, limit: Decimal) -> None:
        self.limit = limit

    def check(self, order: Order, state: TradingState) -> str | None:
        if order.quantity > self.limit:
            return f"max_order_quantity: limit {self.limit}, order {order.quantity}"
        return None


def test_risk_hook_denial_becomes_an_order_denied_event_with_reason(tmp_path):
    from qlcore.events import EventStore

    store = EventStore(f"sqlite:///{tmp_path / 'q.db'}")
    strat, result = run(bars(BARS), {0: [dict(side="BUY", qty=101), dict(side="BUY", qty=100)]}, risk=MaxQty(D(100)), store=store)
    events = store.events(result.run_id)
    denied = [e for e in events if isinstance(e, OrderDenied)]
    assert [d.reason for d in denied] == ["max_order_quantity: limit 100, order 101"]
    assert [f.quantity for f in strat.fills] == [D(100)]


def test_same_backtest_twice_gives_same_orders_and_state_hash():
    from qlcore.data import load_sample
    from qlcore.strategies import create_strategy

    out = []
    for _ in range(2):
        eng = BacktestEngine(BacktestConfig(fee_bps=D(10)))
        eng.add_strategy(create_strategy("sma_cross", {"fast": 10, "slow": 40}))
        out.append(eng.run({"IBM": load_sample("IBM")}))
    a, b = out
    assert a.run_id != b.run_id
    assert len(a.order_list) > 20
    assert a.order_list == b.order_list
    assert a.state_hash == b.state_hash
    assert a.final_equity == b.final_equity


def test_equity_curve_ends_at_the_exact_final_equity_and_starts_at_cash():
    from qlcore.data import load_sample
    from qlcore.strategies import create_strategy

    eng = BacktestEngine(BacktestConfig(fee_bps=D(5)))
    eng.add_strategy(create_strategy("mean_reversion", {"window": 15}))
    r = eng.run({"MSFT": load_sample("MSFT")})
    assert r.equity.iloc[0] == 100_000  # nothing can fill on the first bar
    assert r.equity.iloc[-1] == pytest.approx(float(r.final_equity), abs=1e-6)
    assert len(r.equity) == r.bars
    # net P&L of closed trades + open P&L == equity change
    assert r.trades["pnl"].sum() == pytest.approx(float(r.final_equity) - 100_000, abs=1e-6)


def test_multi_symbol_bars_are_delivered_in_time_order():
    seen = []

    class Recorder(Strategy):
        name = "recorder"

        def on_bar(self, bar):
            seen.append((bar.ts, bar.symbol))

    a = bars(BARS[:3], symbol="A")
    b = bars(BARS[:3], start="2024-01-02", symbol="B")
    eng = BacktestEngine()
    eng.add_strategy(Recorder())
    eng.run({"B": b, "A": a})
    day = pd.Timestamp("2024-01-01").value
    ns = 86_400_000_000_000
    assert seen == [(day, "A"), (day + ns, "B"), (day + ns, "A"), (day + 2 * ns, "B"), (day + 2 * ns, "A"), (day + 3 * ns, "B")]


def test_rebalance_trades_every_symbol_to_equal_weights():
    from qlcore.data import load_sample
    from qlcore.strategies import create_strategy

    eng = BacktestEngine()
    eng.add_strategy(create_strategy("rebalance", {"every": 63, "invest": "0.9"}))
    r = eng.run({s: load_sample(s).loc["2010"] for s in ("IBM", "MSFT")})
    first = r.fills[r.fills["ts"] == r.fills["ts"].min()]
    assert sorted(first["symbol"]) == ["IBM", "MSFT"]
    values = [q * p for q, p in zip(first["quantity"], first["price"], strict=False)]
    # each about 45% of 100,000 (whole shares, at the next open)
    for v in values:
        assert D("43000") < v < D("46000")


def test_data_errors_are_clear():
    eng = BacktestEngine()
    with pytest.raises(ValueError, match="no strategy added"):
        eng.run(bars(BARS))
    eng.add_strategy(Script({}), symbols=["NOPE"])
    with pytest.raises(ValueError, match=r"no data for \['NOPE'\]"):
        eng.run(bars(BARS))
    eng2 = BacktestEngine().add_strategy(Script({}))
    with pytest.raises(ValueError, match="lacks columns"):
        eng2.run({"X": bars(BARS).drop(columns="volume")})


def test_cancel_of_working_order_is_confirmed():
    class CancelNext(Strategy):
        name = "cancel_next"

        def on_bar(self, bar):
            if not hasattr(self, "oid"):
                self.oid = self.buy(1, limit=D("1.00"))
            elif self.open_orders():
                self.cancel(self.oid)

    eng = BacktestEngine().add_strategy(CancelNext())
    r = eng.run(bars(BARS))
    assert r.orders["status"].tolist() == [str(OrderStatus.CANCELED)]


def test_an_account_wiped_out_still_returns_a_result_with_the_ruin_date():
    rows = [(10.0, 10.0, 10.0, 10.0)] * 3 + [(1.0, 1.0, 0.5, 0.5)] * 3
    cfg = BacktestConfig(initial_cash=D(1000))
    no_cash_check = RiskSettings.from_mapping({"account": {"buying_power": False}})
    # 2,000 of stock on 1,000 cash
    _strat, result = run(bars(rows), {0: [dict(side="BUY", qty=200)]}, cfg, risk=no_cash_check)
    assert result.ruined_at == bars(rows).index[3]
    assert result.final_equity == D(1000) - 200 * D(10) + 200 * D("0.5")
    assert result.metrics.end == bars(rows).index[2]


class DenyFirst:
    """Denies the first order it sees, allows the rest."""

    def __init__(self) -> None:
        self.seen = 0

    def check(self, order: Order, state: TradingState) -> str | None:
        self.seen += 1
        return "test: first order denied" if self.seen == 1 else None


@pytest.mark.parametrize("name, params", [("sma_cross", {"fast": 10, "slow": 40}), ("mean_reversion", {"window": 15})])
def test_a_denied_order_does_not_stop_a_builtin_strategy_from_trading(name, params):
    from qlcore.data import load_sample
    from qlcore.strategies import create_strategy

    eng = BacktestEngine(risk=DenyFirst())
    eng.add_strategy(create_strategy(name, params))
    r = eng.run({"IBM": load_sample("IBM")})
    statuses = r.orders["status"].tolist()
    assert statuses[0] == "DENIED"
    assert statuses[1:].count("FILLED") >= 10  # it went on trading at the next signals


def test_a_backtest_is_a_cash_account_unless_configured_otherwise():
    rows = [(10.0, 10.0, 10.0, 10.0)] * 4
    cfg = BacktestConfig(initial_cash=D(1000))
    plan = {0: [dict(side="BUY", qty=200)], 1: [dict(side="BUY", qty=90)]}
    _strat, result = run(bars(rows), plan, cfg)
    over, within = result.orders.to_dict("records")
    assert over["status"] == str(OrderStatus.DENIED)
    assert over["reason"] == "buying_power: limit available cash 1000.00, order 2000.00 + fee 0.00 = 2000.00 (XYZ BUY 200 @ MKT (ref 10.00))"
    assert within["status"] == str(OrderStatus.FILLED)

    margin = RiskSettings.from_mapping({"account": {"leverage": 2}})
    _strat, result = run(bars(rows), {0: [dict(side="BUY", qty=200)], 1: [dict(side="BUY", qty=1)]}, cfg, risk=margin)
    two_x, beyond = result.orders.to_dict("records")
    assert two_x["status"] == str(OrderStatus.FILLED)  # 2,000 of stock on 1,000 of equity: leverage 2
    assert beyond["status"] == str(OrderStatus.DENIED)
    assert beyond["reason"] == ("margin: limit leverage 2 x equity 1000.00 = 2000.00, gross exposure after the order "
                                "2010.00 (now 2000.00) (XYZ BUY 1 @ MKT (ref 10.00))")
