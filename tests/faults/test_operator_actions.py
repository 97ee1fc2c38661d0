"""Operators are never stuck: a strategy halted at its own scope is resumed, a strategy runaway
protection disabled is re-enabled, a halted account or strategy is flattened; each through a command,
with the engine's authorisation check and the outcome in the log and the audit trail."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from engine_rig import STREAM, command, feed_bars, start_engine
from signed import signer

from qlcore.audit.log import AuditLog
from qlcore.control.keys import provision
from qlcore.engine.service import EngineService
from qlcore.events.facts import TradingModeChanged
from qlcore.events.store import EventStore
from qlcore.model.market import Bar
from qlcore.strategies import Strategy
from qlcore.strategies.manager import StrategyState


class Buyer(Strategy):
    """Buys one share on every bar."""

    name = "buyer"

    def on_bar(self, bar: Bar) -> None:
        self.buy(1, bar.symbol)


BUYER = f"{__name__}:Buyer"


@pytest.fixture
def engine(sqlite_url: str, tmp_path: Path):
    risk = tmp_path / "risk.toml"
    risk.write_text('[modes]\nauthorised = ["risk-officer"]\n\n[runaway]\nmax_orders = 3\norder_window_s = 100000\n')
    engine = start_engine(sqlite_url, tmp_path, risk_config=risk)
    yield engine
    engine.shutdown()


def _mode_changes(engine: EngineService, scope: str) -> list[tuple[str, str, str]]:
    return [(e.old, e.new, e.actor) for e in EventStore(engine.url).events(STREAM)
            if type(e) is TradingModeChanged and e.scope == scope]


def test_a_strategy_halted_at_its_own_scope_is_resumed_by_an_authorised_user_only(engine):
    engine.manager.deploy(BUYER, symbols=["AAPL"], allocation=10_000, strategy_id="b")
    engine.modes.restrict("b", "HALTED", reason="drawdown limit", actor="risk-monitor")
    feed_bars(engine, 1, 2)
    assert engine.kernel.state.position("b", "AAPL") == 0  # halted: its orders are denied

    refused = command(engine, "mallory", "resume_trading", {"strategy_id": "b", "reason": "let it trade"})
    assert refused.status == "refused" and "'mallory' is not authorised" in refused.reason
    accepted = command(engine, "risk-officer", "resume_trading", {"strategy_id": "b", "reason": "limit reviewed"})
    assert accepted.status == "accepted" and accepted.reason == "strategy b ACTIVE again"
    feed_bars(engine, 3, 2)
    assert engine.kernel.state.position("b", "AAPL") == 2
    assert _mode_changes(engine, "b")[-1] == ("HALTED", "ACTIVE", "risk-officer")
    assert engine.trading_mode()[0] == "ACTIVE"  # the account was never touched

    again = command(engine, "risk-officer", "resume_trading", {"strategy_id": "b"})
    assert again.status == "refused" and "nothing to resume" in again.reason
    _audited(engine, "risk-officer", "command.resume_trading", "strategy/b", "accepted: strategy b ACTIVE again")
    _audited(engine, "mallory", "command.resume_trading", "strategy/b", "refused: actor 'mallory' is not authorised")


def _audited(engine: EngineService, user: str, action: str, subject: str, outcome: str) -> None:
    entries = [e for e in AuditLog(engine=engine.db).entries() if e.actor == f"user:{user}" and e.action == action]
    assert any(e.subject == subject and e.data["outcome"].startswith(outcome) for e in entries), entries


def test_a_strategy_disabled_by_runaway_protection_is_re_enabled_then_resumed(engine):
    engine.manager.deploy(BUYER, symbols=["AAPL"], allocation=10_000, strategy_id="b")
    feed_bars(engine, 1, 5)
    assert "b" in engine.guard.disabled and engine.manager.state("b") is StrategyState.PAUSED
    held = engine.kernel.state.position("b", "AAPL")
    assert held == 3

    resumed_too_soon = command(engine, "trader", "strategy.resume", {"strategy_id": "b"})
    assert resumed_too_soon.status == "accepted" and resumed_too_soon.reason == (
        "resumed b; its trading mode is HALTED: an authorised user lifts that with qlcore resume-trading --strategy b")
    feed_bars(engine, 6, 1)
    assert engine.kernel.state.position("b", "AAPL") == held  # still disabled: a person must re-enable it
    command(engine, "trader", "strategy.pause", {"strategy_id": "b"})

    enabled = command(engine, "risk-officer", "resume_trading", {"strategy_id": "b", "reason": "bug fixed"})
    assert enabled.status == "accepted"
    assert enabled.reason == ("strategy b ACTIVE again (re-enabled after runaway protection); it is PAUSED: "
                              "qlcore strategy resume b hands it bars again")
    assert "b" not in engine.guard.disabled
    assert command(engine, "trader", "strategy.resume", {"strategy_id": "b"}).status == "accepted"
    feed_bars(engine, 7, 2)
    assert engine.kernel.state.position("b", "AAPL") == held + 2


def test_a_halted_account_is_flattened_and_so_is_a_disabled_strategy(engine):
    feed_bars(engine, 1, 1)
    for qty in ("7", "4"):
        assert command(engine, "trader", "order.submit",
                       {"strategy_id": "desk", "symbol": "MSFT", "side": "BUY", "quantity": qty}).status == "accepted"
    engine.manager.deploy(BUYER, symbols=["AAPL"], allocation=10_000, strategy_id="b")
    feed_bars(engine, 2, 5)  # b buys 3, then runaway protection disables it
    assert "b" in engine.guard.disabled and engine.kernel.state.position("b", "AAPL") == 3
    assert command(engine, "carol", "halt", {"reason": "desk review"}).status == "accepted"

    flat_b = command(engine, "carol", "flatten", {"strategy_id": "b"}, turns=3)
    assert flat_b.status == "accepted" and "1 order(s)" in flat_b.reason
    assert engine.kernel.state.position("b", "AAPL") == 0
    flat_all = command(engine, "carol", "flatten", {}, turns=3)
    assert flat_all.status == "accepted" and engine.kernel.state.position("desk", "MSFT") == 0
    assert engine.trading_mode()[0] == "HALTED"  # flattening opened nothing else
    denied = command(engine, "trader", "order.submit", {"strategy_id": "desk", "symbol": "MSFT", "side": "BUY", "quantity": "1"})
    assert denied.status == "refused" and "HALTED" in denied.reason


def test_a_strategy_is_stopped_with_flatten_while_the_account_is_halted(engine):
    engine.manager.deploy(BUYER, symbols=["AAPL"], allocation=10_000, strategy_id="b")
    feed_bars(engine, 1, 2)
    assert engine.kernel.state.position("b", "AAPL") == 2
    assert command(engine, "carol", "halt", {"reason": "stop everything"}).status == "accepted"
    stopped = command(engine, "carol", "strategy.stop", {"strategy_id": "b", "flatten": True}, turns=3)
    assert stopped.status == "accepted" and engine.manager.state("b") is StrategyState.STOPPED
    assert engine.kernel.state.position("b", "AAPL") == Decimal(0)


@pytest.mark.parametrize(("args", "kind", "payload"), [
    (["halt", "--reason", "desk review", "--flatten"], "halt", {"reason": "desk review", "flatten": True}),
    (["halt", "--reason", "desk review"], "halt", {"reason": "desk review"}),
    (["resume-trading", "--strategy", "b", "--reason", "fixed"], "resume_trading", {"strategy_id": "b", "reason": "fixed"}),
    (["resume-trading"], "resume_trading", {}),
])
def test_the_cli_writes_the_operator_commands_with_their_options(args, kind, payload, sqlite_url):
    import typer
    from typer.testing import CliRunner

    from qlcore.control.commands import CommandQueue
    from qlcore.engine.cli import register

    app = typer.Typer()
    register(app)
    provision(signer().store, {"carol": "admin"})  # carol signs with her key file
    result = CliRunner().invoke(app, [*args, "--wait", "0", "--user", "carol", "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    [sent] = CommandQueue(sqlite_url).pending("engine")
    assert (sent.kind, sent.user, sent.payload) == (kind, "carol", payload)
