"""Every pre-trade rule: the order at the limit passes, one unit, tick or nanosecond over is denied
with the rule's name, the limit and the value in the reason. Orders go through the real kernel."""
from __future__ import annotations

from decimal import Decimal

import pandas as pd
from risk_desk import T0, Desk, denied, passed

from qlcore.model.enums import OrderStatus
from qlcore.model.instruments import Instrument

D = Decimal
NS = 1_000_000_000


def utc(text: str) -> int:
    return pd.Timestamp(text, tz="UTC").value


# --- the order itself ---------------------------------------------------------------------------
def test_order_over_max_quantity_is_denied_with_reason(desk):
    d = desk({"account": {"max_order_quantity": 100}})
    assert passed(d.buy(100))
    assert denied(d.buy(101)) == "max_order_quantity: limit 100, order 101 (AAPL BUY 101 @ MKT (ref 100.00))"


def test_order_over_max_notional_is_denied_with_reason(desk):
    d = desk({"account": {"max_order_notional": "10000.00"}})
    d.kernel.instruments["AAPL"] = Instrument("AAPL", tick_size=D("0.001"))
    assert passed(d.buy(100, limit="100.000"))
    assert passed(d.buy(100))  # market order: valued at the reference price 100.00
    assert denied(d.buy(100, limit="100.125")) == (
        "max_order_notional: limit 10000.00, order 10012.50 (AAPL BUY 100 @ 100.125)"
    )
    assert denied(d.buy(100, limit="100.001")).startswith("max_order_notional: limit 10000.00, order 10000.10 ")
    d.price("AAPL", "100.01")
    assert "order 10001.00" in denied(d.buy(100))


def test_market_order_without_any_price_is_denied_not_guessed(desk):
    d = desk({"account": {"max_order_notional": "10000"}}, prices={})
    reason = denied(d.buy(1, "MSFT"))
    assert reason.startswith("max_order_notional: limit 10000.00, no limit or reference price for MSFT")


def test_limit_price_outside_the_collar_is_denied(desk):
    d = desk({"account": {"price_collar_bps": 50}})
    assert passed(d.buy(1, limit="100.50"))
    assert passed(d.sell(1, limit="99.50", strategy="s2"))
    reason = denied(d.buy(1, limit="100.51"))
    assert reason.startswith("price_collar: limit 50 bps of reference 100.00 (99.50..100.50), order price 100.51 (51 bps)")
    assert "order price 99.49 (51 bps)" in denied(d.sell(1, limit="99.49"))
    assert passed(d.buy(1))  # a market order has no limit price to collar


def test_collar_without_reference_price_denies(desk):
    d = desk({"account": {"price_collar_bps": 50}}, prices={})
    assert denied(d.buy(1, limit="10.00")).startswith("price_collar: limit 50 bps of the reference price, no reference price for AAPL")


def test_duplicate_order_within_window_is_denied(desk):
    d = desk({"account": {"duplicate_window_s": 1}})
    first = d.buy(10, limit="99.00")
    d.clock.now += NS - 1
    reason = denied(d.buy(10, limit="99.00"))
    assert reason.startswith(f"duplicate_order: limit window 1s, same as {first.order_id} sent 0.999999999s earlier")
    assert passed(d.buy(11, limit="99.00"))  # another quantity is another order
    assert passed(d.buy(10, limit="99.01"))  # another price too
    assert passed(d.sell(10, limit="99.00"))
    assert passed(d.buy(10, limit="99.00", strategy="s2"))  # another strategy too
    d.clock.now = T0 + NS  # exactly one window after the first: no longer a duplicate
    assert passed(d.buy(10, limit="99.00"))


def test_order_rate_per_strategy_is_throttled_on_the_engine_clock(desk):
    d = desk({"strategy": {"s1": {"max_orders_per_window": 3, "order_window_s": 2}}})
    for i in range(3):
        d.clock.now = T0 + i
        assert passed(d.buy(1))
    reason = denied(d.buy(1))
    assert reason.startswith("order_rate: limit 3 orders per 2s (strategy s1), order would be number 4 in the window")
    assert passed(d.buy(1, strategy="s2"))  # other strategies have no such limit
    d.clock.now = T0 + 2 * NS  # the first order left the window
    assert passed(d.buy(1))
    assert denied(d.buy(1)).startswith("order_rate:")


def test_account_order_rate_counts_every_strategy(desk):
    d = desk({"account": {"max_account_orders_per_window": 2, "account_order_window_s": 1}})
    assert passed(d.buy(1, strategy="a"))
    assert passed(d.buy(1, strategy="b"))
    assert denied(d.buy(1, strategy="c")).startswith(
        "account_order_rate: limit 2 orders per 1s (account), order would be number 3 in the window"
    )


def test_denied_orders_do_not_use_up_the_order_rate(desk):
    d = desk({"account": {"max_orders_per_window": 2, "max_order_quantity": 10}})
    assert denied(d.buy(11)).startswith("max_order_quantity")
    assert passed(d.buy(1))
    assert passed(d.buy(1))
    assert denied(d.buy(1)).startswith("order_rate")


def test_max_open_orders_per_strategy(desk):
    d = desk({"account": {"max_open_orders": 2}})
    a = d.buy(1, limit="90.00")
    assert passed(a) and passed(d.buy(1, limit="90.01"))
    assert denied(d.buy(1, limit="90.02")) == (
        "max_open_orders: limit 2 (strategy s1), open 2 + this order (AAPL BUY 1 @ 90.02)"
    )
    assert passed(d.buy(1, limit="90.00", strategy="s2"))
    d.kernel.cancel_order(a.order_id)
    assert passed(d.buy(1, limit="90.02"))


def test_max_open_orders_account_wide(desk):
    d = desk({"account": {"max_account_open_orders": 2}})
    assert passed(d.buy(1, limit="90.00", strategy="a")) and passed(d.buy(1, limit="90.00", strategy="b"))
    assert denied(d.buy(1, limit="90.00", strategy="c")).startswith(
        "max_account_open_orders: limit 2 (account), open 2 + this order"
    )


def test_filled_orders_are_no_longer_open(desk):
    d = desk({"account": {"max_open_orders": 1}})
    d.fill("BUY", 5)
    assert passed(d.buy(5, limit="90.00"))


# --- the order against the book -----------------------------------------------------------------
def test_max_position_per_strategy_counts_open_orders_on_the_same_side(desk):
    d = desk({"account": {"max_position": 500}})
    d.fill("BUY", 300)
    assert passed(d.buy(150, limit="90.00"))  # open: 300 + 150
    assert passed(d.sell(400, limit="120.00"))  # sells are not netted against open buys
    assert passed(d.buy(50, limit="90.00"))  # 300 + 200 = 500: at the limit
    reason = denied(d.buy(1, limit="90.00"))
    assert reason.startswith(
        "max_position: limit 500 (strategy s1), worst case 501 = position 300 + open buys 200 + order 1"
    )
    assert passed(d.buy(500, strategy="s2"))  # per strategy


def test_max_position_on_the_short_side(desk):
    d = desk({"account": {"max_position": 500}})
    assert passed(d.sell(500))
    assert denied(d.sell(1)).startswith("max_position: limit 500 (strategy s1), worst case -501 = position 0 - open sells 500 - order 1")


def test_order_reducing_a_position_over_the_limit_passes(desk):
    d = desk({})
    d.fill("BUY", 800)
    d.risk.set_limits({"account": {"max_position": 500}}, actor="test", ts=d.clock.now)
    assert passed(d.sell(100))  # 700 would still be over, but it is back towards the limit
    assert denied(d.buy(1)).startswith("max_position: limit 500")


def test_most_specific_level_sets_the_position_limit(desk):
    d = desk({
        "account": {"max_position": 100},
        "strategy": {"s1": {"max_position": 200, "instrument": {"MSFT": {"max_position": 400}}}},
        "instrument": {"MSFT": {"max_position": 300}, "IBM": {"max_position": 50}},
    }, prices={"AAPL": "10", "MSFT": "10", "IBM": "10"})
    assert passed(d.buy(200)) and denied(d.buy(1)).startswith("max_position: limit 200 (strategy s1)")
    assert passed(d.buy(400, "MSFT")) and denied(d.buy(1, "MSFT")).startswith("max_position: limit 400")
    assert passed(d.buy(300, "MSFT", "s2")) and denied(d.buy(1, "MSFT", "s2")).startswith("max_position: limit 300")
    assert passed(d.buy(50, "IBM")) and denied(d.buy(1, "IBM")).startswith("max_position: limit 50")  # instrument beats strategy
    assert passed(d.buy(100, "AAPL", "s3")) and denied(d.buy(1, "AAPL", "s3")).startswith("max_position: limit 100")


def test_max_account_position_adds_up_strategies(desk):
    d = desk({"instrument": {"AAPL": {"max_account_position": 500}}})
    d.fill("BUY", 200, strategy="a")
    assert passed(d.buy(300, strategy="b"))
    assert denied(d.buy(1, strategy="c")).startswith(
        "max_account_position: limit 500 (account), worst case 501 = position 200 + open buys 300 + order 1"
    )


def test_short_sale_denied_when_not_allowed(desk):
    d = desk({"account": {"allow_short": False}})
    d.fill("BUY", 100)
    assert passed(d.sell(60, limit="101.00"))
    assert passed(d.sell(40))  # 100 - 60 - 40 = 0
    assert denied(d.sell(1)) == (
        "short_sale: limit position >= 0 (shorting not allowed), would be -1 (position 100 - open sells 100 - order 1)"
        " (AAPL SELL 1 @ MKT (ref 100.00))"
    )


def test_short_sale_allowed_by_default_and_per_instrument(desk):
    d = desk({"account": {"allow_short": False}, "instrument": {"MSFT": {"allow_short": True}}},
             prices={"AAPL": "10", "MSFT": "10"})
    assert passed(d.sell(5, "MSFT"))
    assert denied(d.sell(5, "AAPL")).startswith("short_sale:")
    assert passed(desk({}).sell(5))  # shorting is allowed unless a level says otherwise


def test_gross_exposure_counts_every_instrument(desk):
    d = desk({"account": {"max_gross_exposure": "20000"}}, prices={"AAPL": "100.00", "MSFT": "50.00"})
    d.fill("BUY", 100, "AAPL", "100.00")
    d.fill("SELL", 100, "MSFT", "50.00")  # short: |-5000| adds to gross
    assert passed(d.buy(50))  # 10000 + 5000 + 5000 = 20000
    reason = denied(d.buy(1))
    assert reason.startswith("max_gross_exposure: limit 20000.00, gross exposure after the order 20100.00 (now 20000.00)")
    assert passed(d.sell(100))  # does not raise the worst case (the open buy may fill or not)


def test_net_exposure_longs_minus_shorts(desk):
    d = desk({"account": {"max_net_exposure": "10000"}}, prices={"AAPL": "100.00", "MSFT": "50.00"})
    d.fill("SELL", 100, "MSFT", "50.00")  # -5000
    assert passed(d.buy(150))  # -5000 + 15000 = 10000
    assert denied(d.buy(1)).startswith("max_net_exposure: limit 10000.00, net exposure if all buys fill 10100.00")
    # a sell is checked against the short side: -5000 - 5000 = -10000 passes, one more unit does not
    assert passed(d.sell(100, "MSFT"))
    assert denied(d.sell(1, "MSFT")).startswith("max_net_exposure: limit 10000.00, net exposure if all sells fill -10050.00")


def test_net_exposure_on_the_short_side(desk):
    d = desk({"account": {"max_net_exposure": "10000"}}, prices={"AAPL": "100.00"})
    assert passed(d.sell(100))
    assert denied(d.sell(1)).startswith("max_net_exposure: limit 10000.00, net exposure if all sells fill -10100.00")


def test_buying_power_includes_fees_and_open_buys(desk):
    d = desk({"account": {"buying_power": True, "fee_bps": 10, "min_fee": 1}}, cash="10010.00")
    assert passed(d.buy(50, limit="100.00"))  # commits 5000
    assert passed(d.buy(50, limit="100.00", strategy="s2"))  # 5000 + fee 5.00 = 5005 <= 5010
    reason = denied(d.buy(1))
    assert reason.startswith("buying_power: limit available cash 10.00, order 100.00 + fee 1.00 = 101.00")
    assert passed(d.sell(10))  # sells need no cash


def test_buying_power_exactly_at_the_cash(desk):
    d = desk({"account": {"buying_power": True}}, cash="10000.00")
    assert denied(d.buy(100, limit="100.01")).startswith(
        "buying_power: limit available cash 10000.00, order 10001.00 + fee 0.00 = 10001.00"
    )
    assert passed(d.buy(100, limit="100.00"))


def test_max_daily_loss_allows_only_reducing_orders(desk):
    d = desk({"account": {"max_daily_loss": "1000"}})
    d.fill("BUY", 100, px="100.00")
    d.price("AAPL", "90.00")  # -1000: at the limit
    assert passed(d.buy(1))
    d.price("AAPL", "89.99")  # -1001 (the open buy is not filled)
    reason = denied(d.buy(1))
    assert reason.startswith("max_daily_loss: limit loss 1000.00, P&L today -1001.00; the order would not reduce position 100")
    assert passed(d.sell(100))  # closing passes
    assert denied(d.sell(101, strategy="s2")).startswith("max_daily_loss")  # flipping does not


def test_daily_loss_restarts_each_day(desk):
    d = desk({"account": {"max_daily_loss": "1000"}})
    d.fill("BUY", 100, px="100.00")
    d.price("AAPL", "80.00")
    assert denied(d.buy(1)).startswith("max_daily_loss")
    d.clock.now = utc("2024-01-04 15:00")
    d.price("AAPL", "80.00")
    assert passed(d.buy(1))
    d.price("AAPL", "69.99")
    assert "P&L today -1001.00" in denied(d.buy(1))


# --- time ---------------------------------------------------------------------------------------
def test_orders_only_inside_the_xnys_session(desk):
    d = desk({"account": {"calendar": "XNYS"}})
    d.clock.now = utc("2024-01-03 14:30")  # 09:30 New York: the open
    assert passed(d.buy(1))
    d.clock.now = utc("2024-01-03 14:30") - 1
    assert denied(d.buy(1)).startswith(
        "trading_hours: limit XNYS session 2024-01-03 14:30:00..21:00:00 UTC, order at 2024-01-03 14:29:59.999999999 UTC"
    )
    d.clock.now = utc("2024-01-03 21:00") - 1
    assert passed(d.buy(1))
    d.clock.now = utc("2024-01-03 21:00")
    assert denied(d.buy(1)).startswith("trading_hours: limit XNYS session 2024-01-03")


def test_holiday_and_early_close_from_exchange_calendars(desk):
    d = desk({"account": {"calendar": "XNYS"}})
    d.clock.now = utc("2024-07-04 15:00")
    assert denied(d.buy(1)).startswith(
        "trading_hours: limit XNYS sessions only, order at 2024-07-04 15:00:00 UTC "
        "(2024-07-04 is not an XNYS session: holiday or weekend)"
    )
    d.clock.now = utc("2024-07-03 17:00") - 1  # 13:00 New York: the early close
    assert passed(d.buy(1))
    d.clock.now = utc("2024-07-03 17:00")
    assert denied(d.buy(1)).startswith("trading_hours: limit XNYS session 2024-07-03 13:30:00..17:00:00 UTC")
    d.clock.now = utc("2024-01-06 15:00")  # a Saturday
    assert "not an XNYS session" in denied(d.buy(1))


def test_date_mode_for_daily_bars(desk):
    d = desk({"account": {"calendar": "XNYS", "calendar_mode": "date"}})
    d.clock.now = utc("2024-07-05 00:00")
    assert passed(d.buy(1))
    d.clock.now = utc("2024-07-05 00:00") - 1
    assert "2024-07-04 is not an XNYS session" in denied(d.buy(1))


def test_calendar_per_instrument(desk):
    d = desk({"account": {"calendar": "XNYS"}, "instrument": {"MSFT": {"calendar": "XLON"}}},
             prices={"AAPL": "1", "MSFT": "1"})
    d.clock.now = utc("2024-01-03 09:00")  # London open, New York closed
    assert passed(d.buy(1, "MSFT"))
    assert denied(d.buy(1, "AAPL")).startswith("trading_hours: limit XNYS session")


# --- compliance -----------------------------------------------------------------------------------
def test_restricted_instrument_is_denied(desk):
    d = desk({"instrument": {"MSFT": {"restricted": True}}, "strategy": {"s2": {"instrument": {"AAPL": {"restricted": True}}}}},
             prices={"AAPL": "1", "MSFT": "1"})
    assert passed(d.buy(1, "AAPL"))
    assert denied(d.buy(1, "MSFT")) == (
        "restricted_list: limit no orders in restricted instruments, MSFT is restricted (MSFT BUY 1 @ MKT (ref 1.00))"
    )
    assert denied(d.buy(1, "AAPL", "s2")).startswith("restricted_list:")


def test_wash_trade_against_own_resting_order(desk):
    d = desk({"account": {"wash_trade": True}})
    rest = d.sell(10, limit="100.00", strategy="a")
    assert passed(d.buy(10, limit="99.99", strategy="b"))  # below the offer: does not cross
    assert denied(d.buy(10, limit="100.00", strategy="b")) == (
        f"wash_trade: limit no crossing own resting SELL {rest.order_id} @ 100.00, order BUY @ 100.00 would cross it"
        " (AAPL BUY 10 @ 100.00)"
    )
    assert denied(d.buy(10, strategy="b")).startswith("wash_trade:")  # a market order crosses any offer
    d.kernel.cancel_order(rest.order_id)
    assert passed(d.buy(10, limit="100.00", strategy="b"))


def test_order_to_trade_ratio(desk):
    d = desk({"account": {"max_order_to_trade_ratio": 3}})
    for _ in range(3):
        assert passed(d.buy(1, limit="90.00"))
    assert denied(d.buy(1, limit="90.00")).startswith(
        "order_to_trade_ratio: limit 3, ratio 4 (4 orders / 0 fills today)"
    )
    d.clock.now += 60_000_000_000  # a bar after the orders (no look-ahead)
    d.bar("AAPL", "90.00")  # the three resting buys fill: 3 orders / 3 fills
    assert passed(d.buy(1, limit="80.00"))


def test_message_limit_counts_denied_requests_too(desk):
    d = desk({"account": {"max_messages_per_window": 3, "message_window_s": 1, "max_order_quantity": 5}})
    assert denied(d.buy(6)).startswith("max_order_quantity")  # message 1
    assert passed(d.buy(1))
    assert passed(d.buy(1))
    assert denied(d.buy(1)).startswith(
        "message_limit: limit 3 messages per 1s, this request is message 4 in the window"
    )
    d.clock.now = T0 + NS
    assert passed(d.buy(1))


def test_compliance_denials_are_reported_apart_from_risk(desk):
    d = desk({"account": {"max_order_quantity": 1}, "instrument": {"AAPL": {"restricted": True}}})
    denied(d.buy(2))
    d.risk.set_limits({"account": {"max_order_quantity": 1}}, actor="test", ts=d.clock.now)
    denied(d.buy(2))
    report = d.risk.report()
    assert report["compliance"] == {"restricted_list": 1}
    assert report["risk"] == {"max_order_quantity": 1}
    assert report["checked"] == 2 and report["passed"] == 0


def test_chain_order_is_fixed_and_first_denial_wins(desk):
    d = desk({"account": {"max_order_quantity": 1, "max_order_notional": "1"}, "instrument": {"AAPL": {"restricted": True}}})
    assert denied(d.buy(5)).startswith("restricted_list")
    names = d.risk.limits_for("s1", "AAPL").rule_names
    assert names == ("restricted_list", "max_order_quantity", "max_order_notional")


def test_denied_order_never_reaches_the_broker(desk):
    d = desk({"account": {"max_order_quantity": 1}})
    order = d.buy(2)
    assert order.status is OrderStatus.DENIED
    assert d.broker.working_count == 0
    d.bar("AAPL", "100.00")
    assert not d.state.positions


def test_same_rules_when_attached_to_the_kernel_bus(desk):
    config = {"account": {"max_position": 500, "max_open_orders": 2, "max_gross_exposure": "40000"}}
    polled, attached = desk(config), Desk(config, attach=True)
    for d in (polled, attached):
        d.fill("BUY", 200)
        d.buy(100, limit="90.00")
        d.kernel.cancel_order(d.buy(50, limit="91.00").order_id)
        d.bar("AAPL", "101.00")
    for a, b in ((polled.buy(200), attached.buy(200)), (polled.buy(1), attached.buy(1))):
        assert a.status is b.status and a.reason == b.reason
