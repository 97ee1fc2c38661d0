"""An engine never runs without limits: the default limits file when none is given, the user's file as
a whole when one is, and no limits only on a paper engine with an admin's reason, audited."""
from __future__ import annotations

import getpass
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from signed import users_file

from qlcore.audit.log import AuditLog
from qlcore.control.keys import provision
from qlcore.control.users import UserStore, user_key_file
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.engine.snapshot import build_snapshot
from qlcore.model.enums import OrderSide, OrderStatus, OrderType
from qlcore.risk.chain import RiskSettings
from qlcore.risk.config import RiskConfigError
from qlcore.risk.defaults import (
    DEFAULT_LIMITS_FILE,
    LimitsOptOutRefused,
    check_limits_opt_out,
    default_limits_mapping,
    engine_limits,
    limits_toml,
)


def _config(url: str, tmp_path: Path, **kw) -> EngineConfig:
    return EngineConfig(engine_id="t", url=url, venue_path=tmp_path / "venue.sqlite", symbols=("AAPL", "MSFT"),
                        speed=1000.0, command_poll_s=0.0, **kw)


@pytest.fixture
def started(sqlite_url: str, tmp_path: Path):
    engines: list[EngineService] = []

    def start(**kw) -> EngineService:
        engine = EngineService(_config(sqlite_url, tmp_path, **kw))
        engine.start()
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        engine.shutdown()


def _buy(engine: EngineService, quantity: str, price: str, symbol: str = "AAPL") -> tuple[OrderStatus, str]:
    order_id = engine.kernel.submit_order("desk", symbol, OrderSide.BUY, Decimal(quantity), OrderType.LIMIT,
                                          price=Decimal(price))
    order = engine.kernel.state.orders[order_id]
    return order.status, getattr(order, "reason", "") or ""


def test_an_engine_given_no_limits_file_runs_with_the_default_limits(started):
    engine = started()
    assert engine.limits_source.kind == "default" and engine.limits_source.path == DEFAULT_LIMITS_FILE
    # the chain refuses what the default file bounds, naming the rule, the limit and the value
    status, reason = _buy(engine, "10001", "1")
    assert status is OrderStatus.DENIED
    assert reason.startswith("max_order_quantity: limit 10000, ")
    status, reason = _buy(engine, "2000", "200")  # 400,000 of notional
    assert status is OrderStatus.DENIED and reason.startswith("max_order_notional: limit 250000")
    status, _ = _buy(engine, "10000", "1")  # at the limits: passes
    assert status is not OrderStatus.DENIED
    account = engine.chain.settings.limits.account
    assert (account.max_daily_loss, account.max_open_orders, account.leverage, account.buying_power) == (
        Decimal(50000), 20, Decimal(1), True)
    assert engine.chain.settings.runaway.default.max_orders == 50
    assert engine.monitors is not None and engine.chain.settings.monitors.account.drawdown is not None


def test_the_snapshot_names_the_limits_in_force_and_where_they_came_from(started):
    engine = started()
    risk = build_snapshot(engine)["risk"]
    assert risk["source"] == {"kind": "default", "path": str(DEFAULT_LIMITS_FILE),
                              "text": f"default limits file {DEFAULT_LIMITS_FILE}"}
    shown = {row["name"]: row["limit"] for row in risk["in_force"]}
    assert shown["max_order_quantity"] == "10000" and shown["max_orders_per_window"] == "20 per 1 s"
    assert shown["runaway max_orders"] == "50 per 1 s" and shown["monitor drawdown"] == "0.2 -> HALTED"


def test_a_users_file_replaces_the_defaults_as_a_whole(started, tmp_path):
    own = tmp_path / "desk-limits.toml"
    own.write_text("[account]\nmax_order_quantity = 5\n")
    engine = started(risk_config=own)
    assert engine.limits_source.describe() == f"limits file {own.resolve()}"
    assert _buy(engine, "6", "1")[0] is OrderStatus.DENIED
    assert _buy(engine, "5", "1000")[0] is not OrderStatus.DENIED  # no notional limit in this file


def test_the_default_file_goes_through_the_users_loader_and_its_errors_name_file_section_and_key(tmp_path):
    assert RiskSettings.from_file(DEFAULT_LIMITS_FILE) == engine_limits(None)[0]
    bad = tmp_path / "limits.toml"
    bad.write_text("[account]\nmax_order_qty = 10\n")
    with pytest.raises(RiskConfigError, match=rf"limits file {bad}: risk config \[account\]: unknown key\(s\) "
                                              r"\['max_order_qty'\]"):
        engine_limits(bad)
    bad.write_text("[runaway]\nmax_orders = -1\n")
    with pytest.raises(RiskConfigError, match=rf"limits file {bad}: .*max_orders"):
        engine_limits(bad)
    bad.write_text("[acount]\nmax_position = 1\n")
    with pytest.raises(RiskConfigError, match=r"unknown section\(s\) \['acount'\]; valid sections: account, strategy"):
        engine_limits(bad)
    bad.write_text("[account\n")
    with pytest.raises(RiskConfigError, match=rf"limits file {bad}: not valid TOML"):
        engine_limits(bad)
    with pytest.raises(RiskConfigError, match=rf"limits file {tmp_path / 'missing.toml'}: cannot be read"):
        engine_limits(tmp_path / "missing.toml")


def test_every_value_of_the_default_file_is_explained_by_a_comment():
    lines = DEFAULT_LIMITS_FILE.read_text().splitlines()
    keys = [i for i, line in enumerate(lines) if "=" in line and not line.startswith("#")]
    assert len(keys) >= 19
    for i in keys:
        above = i - 1
        while above in keys:  # values of one group share the comment above them
            above -= 1
        assert lines[above].startswith("#"), f"line {i + 1} has no comment above its group: {lines[i]}"


def test_opting_out_is_refused_for_any_engine_but_paper():
    for mode in ("live", "sandbox-live"):
        with pytest.raises(LimitsOptOutRefused, match=f"--no-limits is refused for a {mode} engine: only a paper "
                                                      "engine may run without limits"):
            check_limits_opt_out(mode=mode, approval="the admin said so")


def test_opting_out_is_refused_without_an_admins_reason(sqlite_url, tmp_path):
    for approval in (None, "", "   "):
        with pytest.raises(LimitsOptOutRefused, match="--no-limits needs --admin-approval REASON"):
            EngineService(_config(sqlite_url, tmp_path, no_limits=True, admin_approval=approval))
    assert not (tmp_path / "venue.sqlite").exists()  # refused before anything was opened
    with pytest.raises(ValueError, match=r"--no-limits and --limits .* together: choose one"):
        EngineService(_config(sqlite_url, tmp_path, no_limits=True, admin_approval="x", risk_config=DEFAULT_LIMITS_FILE))
    with pytest.raises(ValueError, match="--admin-approval goes with --no-limits only"):
        EngineService(_config(sqlite_url, tmp_path, admin_approval="x"))


def test_an_approved_opt_out_runs_without_limits_and_is_audited_with_the_admin_and_reason(started, sqlite_url):
    provision(UserStore(users_file()), {"risk-admin": "admin"})
    engine = started(no_limits=True, admin_approval="raw speed benchmark, approved by risk (ticket 42)",
                     admin="risk-admin")
    assert engine.limits_source.kind == "off"
    assert _buy(engine, "10001", "1")[0] is not OrderStatus.DENIED
    [entry] = [e for e in AuditLog(sqlite_url).entries() if e.action == "engine.limits_off"]
    assert entry.actor == "risk-admin" and entry.subject == "account"
    assert entry.data == {"engine_id": "t", "mode": "paper", "os_user": getpass.getuser(),
                          "proven_by": "the admin's signing key",
                          "reason": "raw speed benchmark, approved by risk (ticket 42)"}
    source = build_snapshot(engine)["risk"]["source"]
    assert source["kind"] == "off" and "raw speed benchmark" in source["text"]
    assert any("running without limits" in a["message"] for a in engine.alerts)


def test_opting_out_needs_an_admin_proven_by_their_key(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.delenv("QLCORE_KEY_FILE", raising=False)
    store = UserStore(users_file())
    provision(store, {"desk-trader": "trader", "keyless-admin": "admin"})
    user_key_file(store.path, "keyless-admin").unlink()
    cases = {
        "desk-trader": "'desk-trader' is a trader: only an admin may say so",
        "keyless-admin": "no usable signing key for 'keyless-admin'",
        "nobody-at-all": "no usable signing key for 'nobody-at-all'",
    }
    for name, why in cases.items():
        with pytest.raises(LimitsOptOutRefused, match="--no-limits needs an admin's say, proven by their signing key") as err:
            EngineService(_config(sqlite_url, tmp_path, no_limits=True, admin_approval="speed test", admin=name))
        assert why in str(err.value)
    # another admin's key file named as this admin's is not this admin's say
    provision(store, {"other-admin": "admin"})
    monkeypatch.setenv("QLCORE_KEY_FILE", str(user_key_file(store.path, "other-admin")))
    with pytest.raises(LimitsOptOutRefused, match="'keyless-admin''s key is not the one"):
        EngineService(_config(sqlite_url, tmp_path, no_limits=True, admin_approval="speed test", admin="keyless-admin"))
    assert not (tmp_path / "venue.sqlite").exists()  # refused before anything was opened


def test_limits_written_as_toml_read_back_as_the_same_settings(tmp_path):
    mapping = default_limits_mapping()
    mapping["strategy"] = {"s 1": {"capital": "1000", "instrument": {"AAPL": {"max_position": 5}}}}
    mapping["modes"] = {"authorised": ["alice", "bob"]}
    path = tmp_path / "limits.toml"
    path.write_text(limits_toml(mapping))
    assert tomllib.loads(path.read_text()) == mapping
    assert RiskSettings.from_file(path) == RiskSettings.from_mapping(mapping)
