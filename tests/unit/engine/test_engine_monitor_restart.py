"""The risk monitors after a restart hold what they held before it: peaks, daily baselines, the VaR
window and the breaches already acted on, from the saved state plus the events logged after it, or
from the whole log when nothing (or nothing readable) was saved."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from qlcore.engine.derived_state import MONITORS
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.events.facts import EngineStarted, LimitBreached
from qlcore.events.store import EventStore
from qlcore.events.types import OrderFilled
from qlcore.store.db import dispose_all
from qlcore.store.tables import engine_derived_state, engine_status

RISK = """
[monitors]
var_min_samples = 5
var_window = 40

[monitors.account]
drawdown = { limit = "0.5", action = "HALTED" }
var = "1000000"

[monitors.strategy_default]
drawdown = { limit = "0.0001", action = "REDUCING" }
"""


def _engine(url: str, tmp_path: Path) -> EngineService:
    (tmp_path / "risk.toml").write_text(RISK)
    config = EngineConfig(
        engine_id="m", url=url, venue_path=tmp_path / "venue.sqlite", feed="synthetic", symbols=("AAPL", "MSFT"),
        speed=5000.0, seed=3, heartbeat_s=0.0, derived_state_s=3600.0, risk_config=tmp_path / "risk.toml",
    )
    engine = EngineService(config)
    engine.start()
    return engine


def _run(engine: EngineService, steps: int) -> None:
    target = engine.counters.steps + steps
    while engine.counters.steps < target:
        engine.step()


def _crash(engine: EngineService) -> None:
    """As SIGKILL would leave it: what the loop committed stays, nothing else runs."""
    engine.writer.flush()
    engine.venue.close()
    with engine.db.begin() as conn:
        conn.execute(update(engine_status).values(heartbeat_at=0))
    dispose_all()


def _events(url: str, t: type) -> list:
    return [e for e in EventStore(url).events("engine-m") if type(e) is t]


def _trading_run(url: str, tmp_path: Path) -> tuple[dict, int]:
    """A run that trades and breaches, its monitors saved half-way; returns their live state and the seq saved."""
    engine = _engine(url, tmp_path)
    for sym in ("AAPL", "MSFT"):
        engine.manager.deploy("sma_cross", {"fast": 2, "slow": 4, "quantity": 50}, symbols=[sym],
                              allocation=100_000, strategy_id=f"s-{sym}", actor="test")
        engine.manager.deploy("mean_reversion", {}, symbols=[sym], allocation=100_000, strategy_id=f"mr-{sym}", actor="test")
    _run(engine, 1500)
    engine._save_derived()  # what the loop does every `derived_state_s`
    saved_at = engine.writer.committed_seq
    _run(engine, 1500)  # these steps are only in the log
    live = engine.monitors.checkpoint()
    assert engine.writer.committed_seq > saved_at
    _crash(engine)
    # the run must trade, breach and fill the VaR window for the comparisons to mean anything
    assert len(_events(url, OrderFilled)) > 10
    assert _events(url, LimitBreached)
    assert len(live["returns"]) == 40 and len(live["tracks"]) == 5
    return live, saved_at


def _restart(url: str, tmp_path: Path) -> tuple[EngineService, dict]:
    again = _engine(url, tmp_path)
    started = json.loads(_events(url, EngineStarted)[-1].details)
    return again, started


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_monitors_resume_from_the_saved_state_and_the_events_after_it(backend, request, tmp_path):
    url = request.getfixturevalue("pg_url" if backend == "postgresql" else "sqlite_url")
    live, saved_at = _trading_run(url, tmp_path)
    breaches = len(_events(url, LimitBreached))

    again, started = _restart(url, tmp_path)
    assert started["monitors_from"] == saved_at
    assert again.monitors.checkpoint() == live
    again.shutdown()
    assert len(_events(url, LimitBreached)) == breaches  # fed silenced: nothing recorded again


def test_with_nothing_saved_the_whole_log_gives_the_same_monitors(sqlite_url, tmp_path):
    live, _ = _trading_run(sqlite_url, tmp_path)
    breaches = len(_events(sqlite_url, LimitBreached))
    with EventStore(sqlite_url).engine.begin() as conn:
        conn.execute(delete(engine_derived_state))

    again, started = _restart(sqlite_url, tmp_path)
    assert started["monitors_from"] is None
    assert again.monitors.checkpoint() == live
    again.shutdown()
    # every breach of the run was met again while feeding the log: remembered, not recorded again
    assert len(_events(sqlite_url, LimitBreached)) == breaches


def test_an_unreadable_saved_state_is_reported_and_the_whole_log_used(sqlite_url, tmp_path):
    live, _ = _trading_run(sqlite_url, tmp_path)
    with EventStore(sqlite_url).engine.begin() as conn:
        conn.execute(update(engine_derived_state).where(engine_derived_state.c.part == MONITORS)
                     .values(body='{"version": 1, "tracks": {"account": ["x"]}}'))

    again, started = _restart(sqlite_url, tmp_path)
    assert started["monitors_from"] is None
    assert again.monitors.checkpoint() == live
    assert any(a["source"] == "risk monitors" and "unreadable" in a["message"] for a in again.alerts)
    again.shutdown()


def test_a_clean_stop_saves_the_monitors_at_the_last_event(sqlite_url, tmp_path):
    engine = _engine(sqlite_url, tmp_path)
    _run(engine, 50)
    engine.shutdown()
    live = engine.monitors.checkpoint()
    last = engine.writer.committed_seq
    dispose_all()

    again, started = _restart(sqlite_url, tmp_path)
    assert started["monitors_from"] == last
    assert again.monitors.checkpoint() == live
    again.shutdown()


def test_a_saved_state_beyond_the_log_is_reported_and_not_used(sqlite_url, tmp_path):
    _trading_run(sqlite_url, tmp_path)
    with EventStore(sqlite_url).engine.begin() as conn:
        conn.execute(update(engine_derived_state).where(engine_derived_state.c.part == MONITORS).values(seq=10**9))

    again, started = _restart(sqlite_url, tmp_path)
    assert started["monitors_from"] is None
    assert any("beyond the log's end" in a["message"] for a in again.alerts)
    fresh = again.monitors.checkpoint()
    assert fresh["tracks"] == {} and fresh["returns"] == [] and fresh["breached"] == []
    again.shutdown()
