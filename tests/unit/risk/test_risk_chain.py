"""The one risk chain: its parts in order, capital and margin limits, one meaning per limit, the kill
switch addressing it directly."""
from __future__ import annotations

from decimal import Decimal

import pytest
from risk_desk import SYMBOLS, T0, denied, passed

from qlcore.brokers.simulated import SimulatedBroker
from qlcore.engine.clock import BacktestClock
from qlcore.engine.kernel import Kernel
from qlcore.events.types import AccountFunded
from qlcore.model.enums import OrderSide, OrderStatus
from qlcore.model.instruments import Instrument
from qlcore.model.market import Bar
from qlcore.model.orders import Order
from qlcore.risk.chain import RiskChain, RiskSettings
from qlcore.risk.config import RiskConfigError
from qlcore.risk.killswitch import halt
from qlcore.risk.modes import ModeConfig, TradingMode, TradingModes
from qlcore.strategies import Strategy
from qlcore.strategies.manager import StrategyManager

D = Decimal


class Idle(Strategy):
    name = "idle"


IDLE = f"{__name__}:Idle"


class Book:
    """A kernel on the simulated broker with a `RiskChain` from `settings`, and a strategy manager."""

    def __init__(self, settings: dict, cash: str = "1000000") -> None:
        self.clock = BacktestClock(T0)
        self.broker = SimulatedBroker()
        self.chain = RiskChain(RiskSettings.from_mapping({"modes": {"authorised": ["alice"]}, **settings}))
        self.kernel = Kernel(
            clock=self.clock, broker=self.broker, instruments={s: Instrument(s) for s in SYMBOLS}, risk=self.chain
        )
        self.kernel.emit(AccountFunded(T0, "main", D(cash)))
        self.manager = StrategyManager(self.kernel)
        self.bar("AAPL", "100")
        self.bar("MSFT", "50")

    def bar(self, symbol: str, px: str) -> None:
        p = float(px)
        bar = Bar(symbol, self.clock.now, p, p, p, p, 1e9)
        self.broker.on_bar(bar)
        self.chain.on_bar(bar)

    def order(self, side: str, qty: int, symbol: str = "AAPL", strategy: str = "s1") -> Order:
        oid = self.kernel.submit_order(strategy, symbol, OrderSide(side), qty)
        return self.kernel.state.orders[oid]

    def filled(self, side: str, qty: int, symbol: str = "AAPL", strategy: str = "s1") -> Order:
        order = self.order(side, qty, symbol, strategy)
        self.clock.now += 60_000_000_000  # an order fills on a bar after its creation (no look-ahead)
        self.bar(symbol, "100" if symbol == "AAPL" else "50")
        assert order.status is OrderStatus.FILLED, order.reason
        return order


def test_a_strategys_capital_bounds_its_gross_exposure_across_instruments_open_orders_included():
    book = Book({"strategy": {"s1": {"capital": "10000"}}})
    book.filled("BUY", 40, "MSFT")  # 2,000
    assert passed(book.order("BUY", 60))  # 2,000 + 6,000 open
    assert denied(book.order("BUY", 21)) == (
        "capital: limit 10000.00 (strategy s1), gross exposure after the order 10100.00 (now 8000.00) "
        "(AAPL BUY 21 @ MKT (ref 100.00))"
    )
    assert passed(book.order("BUY", 20))  # exactly the capital
    assert passed(book.order("BUY", 1, strategy="s2"))  # another strategy: not bound by s1's capital


def test_over_its_capital_after_prices_moved_a_strategy_may_still_reduce_but_not_add():
    book = Book({"strategy": {"s1": {"capital": "10000"}}})
    book.filled("BUY", 90)
    book.bar("AAPL", "150")  # 13,500 now: over the capital without a new order
    assert denied(book.order("BUY", 1)).startswith("capital: limit 10000.00 (strategy s1), gross exposure after "
                                                     "the order 13650.00 (now 13500.00)")
    assert passed(book.order("SELL", 30))


def test_a_deployment_capital_and_limits_mean_what_the_same_limits_mean_in_the_risk_file():
    configured = Book({"strategy": {"s1": {"capital": "10000", "max_position": 80}}})
    deployed = Book({})
    deployed.manager.deploy(IDLE, symbols=["AAPL"], allocation=10_000, strategy_id="s1", limits={"max_position": 80})
    for book in (configured, deployed):
        book.filled("BUY", 50)
        book.order("BUY", 20)  # open: counts towards both limits
    for qty in (11, 31):
        assert denied(configured.order("BUY", qty)) == denied(deployed.order("BUY", qty))
    assert denied(deployed.order("BUY", 11)).startswith("max_position: limit 80 (strategy s1), worst case 81")
    # where the file and the deployment both set a limit, the tighter one is in force
    both = Book({"strategy": {"s1": {"max_position": 30}}})
    both.manager.deploy(IDLE, symbols=["AAPL"], allocation=10_000, strategy_id="s1", limits={"max_position": 80})
    assert denied(both.order("BUY", 31)).startswith("max_position: limit 30 (strategy s1)")


def test_the_parts_run_in_order_lifecycle_modes_runaway_rules():
    book = Book({"account": {"max_order_quantity": 5}, "runaway": {"max_orders": 100}})
    book.manager.deploy(IDLE, symbols=["AAPL"], allocation=100_000, strategy_id="s1")
    assert denied(book.order("BUY", 10)).startswith("max_order_quantity: limit 5")  # the rules
    book.chain.modes.restrict("s1", TradingMode.HALTED, reason="test", actor="bob")
    assert denied(book.order("BUY", 10)) == "strategy s1 mode HALTED: new orders are denied (test)"  # the modes
    book.manager.pause("s1")
    assert denied(book.order("BUY", 10)) == "strategy s1 is PAUSED: new orders are refused"  # the lifecycle


def test_the_margin_account_allows_leverage_up_to_its_setting_and_names_equity():
    book = Book({"account": {"leverage": "1.5"}}, cash="10000")
    book.filled("BUY", 100)  # 10,000 of stock on 10,000 of equity
    assert passed(book.order("BUY", 50))  # 15,000 gross = 1.5 x equity
    assert denied(book.order("BUY", 1)) == (
        "margin: limit leverage 1.5 x equity 10000.00 = 15000.00, gross exposure after the order 15100.00 "
        "(now 15000.00) (AAPL BUY 1 @ MKT (ref 100.00))"
    )


def test_the_kill_switch_halts_through_the_chain_and_its_flattening_passes_a_paused_strategys_lifecycle():
    book = Book({})
    book.manager.deploy(IDLE, symbols=["AAPL"], allocation=100_000, strategy_id="s1")
    book.filled("BUY", 10)
    book.manager.pause("s1")
    summary = halt(book.kernel, book.chain.modes, reason="drill", actor="alice", flatten=True)
    (flatten,) = summary.flatten_orders
    assert book.kernel.state.orders[flatten].status is OrderStatus.ACCEPTED  # sent: not denied by the lifecycle
    assert denied(book.order("BUY", 1, strategy="other")).startswith("account mode HALTED")
    with pytest.raises(ValueError, match="does not enforce these trading modes"):
        halt(book.kernel, TradingModes.for_kernel(book.kernel, ModeConfig()), reason="x", actor="alice")


def test_a_chain_is_bound_to_one_kernel():
    book = Book({})
    with pytest.raises(RuntimeError, match="already bound"):
        Kernel(clock=book.clock, broker=SimulatedBroker(), instruments={}, risk=book.chain)


def test_a_bad_risk_file_names_the_section_and_key():
    with pytest.raises(RiskConfigError, match=r"\[account\]: unknown key\(s\) \['levrage'\]"):
        RiskSettings.from_mapping({"account": {"levrage": 2}})
    with pytest.raises(RiskConfigError, match=r"\[account\] capital: cannot be set per account|capital"):
        RiskSettings.from_mapping({"instrument": {"AAPL": {"capital": 5}}})


class Churn(Strategy):
    """Buys on some bars and sells on others, in sizes that reach the cash and loss limits."""

    name = "churn"

    def on_start(self) -> None:
        self.n = 0

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        if self.n % 3:
            self.buy(40 + self.n % 7 * 20)
        else:
            self.sell(60)


def test_bars_kept_until_the_next_check_give_the_denials_of_bars_handed_at_once():
    from qlcore.data.synthetic import synthetic_bars
    from qlcore.engine import BacktestConfig, BacktestEngine
    from qlcore.risk import RiskEngine

    bars = synthetic_bars(3 * 1440, freq="1min", seed=3, symbol="SYN")  # three days and nights
    config = {"account": {"buying_power": True, "max_daily_loss": "150", "max_position": 220}}

    def denials(eager: bool) -> list[tuple]:
        rules = RiskEngine(config)
        engine = BacktestEngine(BacktestConfig(initial_cash=D(22_000)), risk=rules)
        if eager:  # the old way: a strategy hands every close to the rules as the bar comes
            engine.add_strategy(rules.price_feed())
        engine.add_strategy(Churn(strategy_id="churn"))
        orders = engine.run(bars).orders
        return [(r.ts_init, r.side, r.quantity, r.reason) for r in orders.itertuples() if r.status == "DENIED"]

    kept = denials(eager=False)
    assert {reason.split(":")[0] for *_, reason in kept} >= {"max_daily_loss", "buying_power", "max_position"}
    assert kept == denials(eager=True)


def test_a_capital_deployed_after_trading_began_counts_what_the_strategy_already_holds():
    book = Book({})
    assert not book.chain.engine.book.tracking_strategies  # no capital anywhere: nothing kept per strategy
    book.filled("BUY", 40, "MSFT", strategy="s1")  # 2,000
    book.order("BUY", 30, strategy="s1")  # 3,000 open
    book.manager.deploy(IDLE, symbols=["AAPL"], allocation=6_000, strategy_id="s1")
    assert denied(book.order("BUY", 11, strategy="s1")).startswith(
        "capital: limit 6000.00 (strategy s1), gross exposure after the order 6100.00 (now 5000.00)"
    )
