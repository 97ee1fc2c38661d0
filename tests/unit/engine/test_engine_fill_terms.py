"""The paper engine's fill terms: the backtest's by default, and every difference shown where users look."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from qlcore.cli import app
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.engine.status import read_status
from qlcore.events.facts import EngineStarted
from qlcore.events.store import EventStore


def test_the_default_paper_terms_are_the_backtests():
    terms = EngineConfig().fill_terms
    assert terms.convention == "next bar open" and not terms.fill_on_arrival
    assert terms.differences() == []


def test_every_difference_from_the_backtest_is_named():
    terms = EngineConfig(fill_on_arrival=True, fee_bps=Decimal(5), slippage_bps=Decimal(2), latency_ms=20.0,
                         participation=0.25).fill_terms
    assert terms.differences() == [
        "fills on arrival at the last close (backtest: next bar open)",
        "fee_bps 5 (backtest: 0)",
        "slippage_bps 2 (backtest: 0)",
        "latency 20 ms (backtest: none)",
        "fills limited to 25% of each bar's volume (backtest: no limit)",
    ]


def test_engine_started_the_snapshot_and_status_show_the_terms(sqlite_url: str, tmp_path: Path):
    config = EngineConfig(engine_id="ft", url=sqlite_url, venue_path=tmp_path / "v.sqlite", symbols=("IBM",),
                          fee_bps=Decimal(5), max_steps=3)
    engine = EngineService(config)
    engine.run()
    expected = config.fill_terms.to_dict()
    assert expected["differs_from_backtest"] == ["fee_bps 5 (backtest: 0)"]
    [started] = [e for e in EventStore(sqlite_url).events(config.stream) if type(e) is EngineStarted]
    assert json.loads(started.details)["fills"] == expected
    [row] = read_status(sqlite_url, "ft")
    assert row.snapshot["broker"]["fills"] == expected
    shown = CliRunner().invoke(app, ["status", "--engine-id", "ft", "--db", sqlite_url])
    assert "  fills       next bar open, fee 5 bps, slippage 0 bps; differs from the backtest: fee_bps 5 (backtest: 0)" \
        in shown.output, shown.output
