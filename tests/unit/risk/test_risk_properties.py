"""Random order streams through the real kernel and simulated broker never breach a hard limit,
and the risk engine's incremental book always equals one rebuilt from the state."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from risk_desk import Desk

from qlcore.events.types import AccountFunded
from qlcore.model.enums import OrderSide, OrderStatus
from qlcore.risk.book import RiskBook

D = Decimal
MAX_POSITION = D(500)
MAX_ACCOUNT_POSITION = D(800)
MAX_NOTIONAL = D(20_000)
MAX_OPEN = 4
CONFIG = {
    "account": {
        "max_position": 500,
        "max_order_notional": "20000",
        "max_open_orders": MAX_OPEN,
        "max_gross_exposure": "150000",
    },
    "instrument": {"AAPL": {"max_account_position": 800}, "MSFT": {"max_account_position": 800}},
    "strategy": {"s2": {"allow_short": False}, "s3": {"capital": "30000"}},
}

submit = st.tuples(
    st.just("submit"),
    st.sampled_from(["s1", "s2", "s3"]),
    st.sampled_from(["AAPL", "MSFT"]),
    st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
    st.integers(1, 400),
    st.one_of(st.none(), st.integers(-300, 300)),  # None: market; else limit = reference + n cents
    st.booleans(),  # a bar of the symbol right after: market orders fill
)
move = st.tuples(st.just("bar"), st.sampled_from(["AAPL", "MSFT"]), st.integers(-500, 500))
cancel = st.tuples(st.just("cancel"), st.integers(0, 1000))
actions = st.lists(st.one_of(submit, submit, submit, move, cancel), min_size=5, max_size=60)


def run_stream(steps, attach: bool) -> Desk:
    d = Desk(CONFIG, attach=attach, prices={"AAPL": "100.00", "MSFT": "40.00"})
    ref = {"AAPL": D("100.00"), "MSFT": D("40.00")}
    for step in steps:
        d.clock.now += 1_000_000
        if step[0] == "submit":
            _, strategy, symbol, side, qty, offset, then_bar = step
            price = None if offset is None else max(ref[symbol] + D(offset) / 100, D("0.01"))
            order = d.order(side.value, qty, symbol, strategy, limit=price)
            if order.status is not OrderStatus.DENIED:
                assert qty * (price if price is not None else ref[symbol]) <= MAX_NOTIONAL
            if then_bar:
                d.bar(symbol, str(ref[symbol]), low=str(ref[symbol] - 1), high=str(ref[symbol] + 1))
        elif step[0] == "bar":
            _, symbol, cents = step
            ref[symbol] = max(ref[symbol] + D(cents) / 100, D("1.00"))
            px = str(ref[symbol])
            d.bar(symbol, px, low=str(ref[symbol] - 1), high=str(ref[symbol] + 1))
        else:
            open_orders = d.state.open_orders()
            if open_orders:
                d.kernel.cancel_order(open_orders[step[1] % len(open_orders)].order_id)
        check_limits(d)
    return d


def check_limits(d: Desk) -> None:
    state = d.state
    for (strategy, _), pos in state.positions.items():
        assert abs(pos.quantity) <= MAX_POSITION
        if strategy == "s2":
            assert pos.quantity >= 0
    for symbol in ("AAPL", "MSFT"):
        assert abs(state.net_position(symbol)) <= MAX_ACCOUNT_POSITION
    for strategy in ("s1", "s2", "s3"):
        assert len(state.open_orders(strategy)) <= MAX_OPEN


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_random_order_streams_never_breach_hard_limits(steps):
    run_stream(steps, attach=False)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions, st.booleans())
def test_incremental_book_equals_a_book_rebuilt_from_the_state(steps, attach):
    d = run_stream(steps, attach=attach)
    book = d.risk.book
    if book.state is d.state:
        book.sync()
    else:  # no order was checked yet
        book.bind(d.state)
    fresh = RiskBook()
    fresh.prices = dict(book.prices)
    fresh._fed = set(book._fed)
    assert book.tracking_strategies  # s3 has a capital: the book keeps per-strategy exposure
    fresh.track_strategies()
    fresh.bind(d.state)

    def nonzero(mapping: dict) -> dict:
        return {k: v for k, v in mapping.items() if v}

    assert set(book.tracked) == set(fresh.tracked) == {o.order_id for o in d.state.open_orders()}
    assert nonzero(book.open_by_strategy) == nonzero(fresh.open_by_strategy)
    assert book.open_total == fresh.open_total
    for name in ("sym_qty", "buy_open", "sell_open", "sym_buy_open", "sym_sell_open", "strategy_contrib",
                 "strategy_gross"):
        assert nonzero(getattr(book, name)) == nonzero(getattr(fresh, name)), name
    for name in ("net", "gross", "hi", "lo", "realized", "fees", "cost"):
        assert getattr(book, name) == getattr(fresh, name), name
    resting = {s: set(v) for s, v in book.resting.items() if v}
    assert resting == {s: set(v) for s, v in fresh.resting.items() if v}


def test_late_fill_and_deposit_are_caught_by_the_cash_check():
    d = Desk({"account": {"max_position": 100}}, prices={"AAPL": "100.00"})
    order = d.buy(60, limit="99.00")
    d.kernel.cancel_order(order.order_id)
    d.buy(1, limit="50.00")  # the book sees the cancel here and stops tracking the order
    d.kernel.on_filled(order.order_id, "LATE-1", D(60), D("99.00"), D(0))  # a venue's late fill
    d.kernel.emit(AccountFunded(d.clock.now, "main", D(1000)))
    assert d.sell(1, limit="150.00").status is not OrderStatus.DENIED  # the next check rebuilds
    assert d.risk.book.sym_qty["AAPL"] == D(60)
    assert d.buy(39, limit="50.00").status is not OrderStatus.DENIED  # 60 + 1 + 39 = 100
    assert d.buy(1, limit="50.00").reason.startswith("max_position: limit 100 (strategy s1), worst case 101")
