"""Risk limits: a strict frozen config by level, and limit changes recorded as events at run time."""
from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from risk_desk import denied, passed

from qlcore.events import EventStore
from qlcore.events.codec import decode, encode
from qlcore.events.types import RiskLimitsChanged
from qlcore.risk import Limits, RiskConfig, RiskConfigError, RiskEngine
from qlcore.risk.calendar import CalendarError

TOML = """
[account]
max_order_notional = "50000.00"
max_position = 1000
calendar = "XNYS"
buying_power = true
fee_bps = 1.5

[strategy.momo]
max_position = 500
max_orders_per_window = 10
order_window_s = 0.5

[strategy.momo.instrument.AAPL]
max_position = 200

[instrument.AAPL]
max_position = 300
price_collar_bps = 25

[instrument.GME]
restricted = true
"""


def test_toml_config_resolves_the_most_specific_level():
    config = RiskConfig.from_toml(TOML)
    engine = RiskEngine(config)
    assert engine.limits_for("momo", "AAPL").max_position == Decimal(200)  # strategy x instrument
    assert engine.limits_for("other", "AAPL").max_position == Decimal(300)  # instrument
    assert engine.limits_for("momo", "MSFT").max_position == Decimal(500)  # strategy
    assert engine.limits_for("other", "MSFT").max_position == Decimal(1000)  # account
    lim = engine.limits_for("momo", "AAPL")
    assert lim.price_collar_bps == Decimal(25) and lim.max_order_notional == Decimal("50000.00")
    assert lim.order_window_ns == 500_000_000 and lim.fee_bps == Decimal("1.5")
    assert engine.limits_for("x", "GME").rule_names[0] == "restricted_list"
    assert "restricted_list" not in engine.limits_for("x", "AAPL").rule_names


def test_config_round_trips_through_json():
    config = RiskConfig.from_toml(TOML)
    again = RiskConfig.from_json(config.to_json())
    assert again == config
    assert again.to_json() == config.to_json()


def test_config_is_frozen():
    config = RiskConfig.from_toml(TOML)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.account = Limits()  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.strategies["new"] = Limits()  # type: ignore[index]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"acount": {}}, "unknown section(s) ['acount']"),
        ({"account": {"max_ordr_quantity": 1}}, "risk config [account]: unknown key(s) ['max_ordr_quantity']"),
        ({"strategy": {"s": {"max_qty": 1}}}, "risk config [strategy.s]: unknown key(s) ['max_qty']"),
        (
            {"strategy": {"s": {"instrument": {"AAPL": {"bogus": 1}}}}},
            "risk config [strategy.s.instrument.AAPL]: unknown key(s) ['bogus']",
        ),
        ({"strategy": {"s": {"max_gross_exposure": 1}}}, "[strategy.s] max_gross_exposure: cannot be set per strategy"),
        ({"instrument": {"AAPL": {"max_open_orders": 1}}}, "[instrument.AAPL] max_open_orders: cannot be set per instrument"),
        ({"account": {"restricted": True}}, "[account] restricted: cannot be set per account"),
        ({"account": {"max_position": -1}}, "[account] max_position: must be >= 0, got -1"),
        ({"account": {"max_position": "lots"}}, "[account] max_position: not a number: 'lots'"),
        ({"account": {"max_open_orders": 2.5}}, "[account] max_open_orders: expected a whole number, got 2.5"),
        ({"account": {"wash_trade": "yes"}}, "[account] wash_trade: expected true or false, got 'yes'"),
        ({"account": {"order_window_s": 0}}, "[account] order_window_s: must be > 0, got 0"),
        ({"account": {"calendar_mode": "hours"}}, "[account] calendar_mode: expected one of ['session', 'date']"),
    ],
)
def test_bad_config_names_the_section_the_key_and_the_reason(mapping, message):
    with pytest.raises(RiskConfigError) as info:
        RiskConfig.from_mapping(mapping)
    assert message in str(info.value)


def test_bad_toml_is_a_config_error():
    with pytest.raises(RiskConfigError, match="not valid TOML"):
        RiskConfig.from_toml("[account\nmax_position = 1")


def test_unknown_calendar_fails_when_the_engine_is_built():
    with pytest.raises(CalendarError, match="NOPE"):
        RiskEngine({"account": {"calendar": "NOPE"}})


def test_limit_change_is_recorded_as_an_event_and_applies_to_the_next_order(desk):
    d = desk({"account": {"max_order_quantity": 100}})
    seen: list = []
    d.risk.event_listeners.append(seen.append)
    assert passed(d.buy(100))
    event = d.risk.set_limits({"account": {"max_order_quantity": 50}}, actor="alice", ts=d.clock.now, reason="vol spike")
    assert seen == [event] and d.risk.changes == [event]
    assert (event.actor, event.ts, event.reason) == ("alice", d.clock.now, "vol spike")
    assert RiskConfig.from_json(event.config) == RiskConfig.from_mapping({"account": {"max_order_quantity": 50}})
    assert denied(d.buy(51)).startswith("max_order_quantity: limit 50, order 51")
    assert passed(d.buy(50))


def test_limit_change_is_not_applied_when_its_record_fails(desk):
    d = desk({"account": {"max_order_quantity": 100}})

    def broken(event):
        raise OSError("disk full")

    d.risk.event_listeners.append(broken)
    with pytest.raises(OSError):
        d.risk.set_limits({"account": {"max_order_quantity": 1}}, actor="bob", ts=d.clock.now)
    assert passed(d.buy(100))


def test_limit_change_with_an_unknown_calendar_keeps_the_old_limits(desk):
    d = desk({"account": {"max_order_quantity": 100}})
    with pytest.raises(CalendarError):
        d.risk.set_limits({"account": {"calendar": "NOPE"}}, actor="bob", ts=d.clock.now)
    assert d.risk.changes == [] and passed(d.buy(100))


def test_limit_changes_are_stored_and_fold_back_into_a_new_engine(sqlite_url, desk):
    store = EventStore(sqlite_url)
    d = desk({"account": {"max_order_quantity": 100}})
    with store.writer("risk-main", batch_size=1) as writer:
        d.risk.event_listeners.append(writer.append)
        d.risk.set_limits({"account": {"max_order_quantity": 10}}, actor="alice", ts=1)
        d.risk.set_limits({"account": {"max_order_quantity": 20}}, actor="carol", ts=2)
    events = store.events("risk-main")
    assert [type(e) for e in events] == [RiskLimitsChanged, RiskLimitsChanged]
    assert decode(*encode(events[1])) == events[1]
    fresh = RiskEngine()
    for event in events:
        fresh.apply(event)
    assert fresh.config == d.risk.config
    assert fresh.limits_for("s1", "AAPL").max_order_quantity == Decimal(20)


def test_cli_checks_a_limits_file_and_shows_resolved_limits(tmp_path):
    from typer.testing import CliRunner

    from qlcore.risk.cli import risk_app

    good = tmp_path / "limits.toml"
    good.write_text(TOML)
    out = CliRunner().invoke(risk_app, ["limits", str(good), "--strategy", "momo", "--symbol", "AAPL"])
    assert out.exit_code == 0, out.output
    assert "OK (1 strategies, 2 instruments, 1 strategy x instrument overrides)" in out.output
    assert "max_position                     200" in out.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[instrument.AAPL]\nmax_open_orders = 3\n")
    out = CliRunner().invoke(risk_app, ["limits", str(bad)])
    assert out.exit_code == 2 and "[instrument.AAPL] max_open_orders: cannot be set per instrument" in out.output
    assert f"limits file {bad}:" in out.output


def test_cli_checks_the_default_limits_file_with_the_engines_loader():
    from typer.testing import CliRunner

    from qlcore.risk.cli import risk_app
    from qlcore.risk.defaults import DEFAULT_LIMITS_FILE

    out = CliRunner().invoke(risk_app, ["limits", "--strategy", "any", "--symbol", "AAPL"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith(f"{DEFAULT_LIMITS_FILE}: OK (0 strategies")
    assert "max_order_quantity               10000" in out.output and "leverage                         1" in out.output
