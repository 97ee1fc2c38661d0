"""`qlcore replay --verify` on an engine's stream: a cleanly stopped engine's last event is its state
hash, which the replay must reproduce; a running or crashed engine has none, and the log's integrity
is what is verified, with the replayed hash printed."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from qlcore.cli import main
from qlcore.data.feed import ManualClock
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.events.facts import EngineStateRecorded
from qlcore.events.store import EventStore
from qlcore.model.enums import OrderSide
from qlcore.store.db import dispose_all
from qlcore.store.tables import engine_status

T0 = 1_700_000_000 * 1_000_000_000


def _trading_engine(url: str, tmp_path: Path) -> EngineService:
    """An engine on the synthetic feed (its wall clock moved by hand) that has bought and sold."""
    clock = ManualClock(T0)
    config = EngineConfig(engine_id="v", url=url, venue_path=tmp_path / "venue.sqlite", feed="synthetic",
                          symbols=("AAPL", "MSFT"), speed=1.0, seed=2, heartbeat_s=3600.0)
    engine = EngineService(config, wall_clock=clock)
    engine.start()
    for i in range(12):
        clock.advance(1.0)
        engine.step()
        if i % 3 == 0:
            engine.kernel.submit_order("desk", "AAPL", OrderSide.BUY if i % 2 else OrderSide.SELL, 5)
    engine.step()
    assert len(engine.recent_fills) == 4  # the replay has orders, fills and positions to reproduce
    return engine


def _replay(monkeypatch, capsys, url: str, stream: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["qlcore", "replay", stream, "--verify", "--db", url])
    with pytest.raises(SystemExit) as ended:
        main()
    out, err = capsys.readouterr()
    return int(ended.value.code or 0), out, err


def test_a_cleanly_stopped_engine_is_verified_against_the_hash_it_recorded(sqlite_url, tmp_path, monkeypatch, capsys):
    engine = _trading_engine(sqlite_url, tmp_path)
    engine.shutdown()
    live = engine.kernel.state.state_hash()
    last = EventStore(sqlite_url).events("engine-v")[-1]
    assert type(last) is EngineStateRecorded and last.state_hash == live
    for name in ("engine-v", "v"):  # the stream, or the engine's id
        code, out, err = _replay(monkeypatch, capsys, sqlite_url, name)
        assert code == 0, out + err
        assert f"recorded (event log) {live}" in out and f"replayed state hash  {live}" in out
        assert "verified: replay reproduces the recorded state exactly" in out


def test_a_crashed_engine_has_its_log_verified_and_its_replayed_hash_printed(sqlite_url, tmp_path, monkeypatch, capsys):
    engine = _trading_engine(sqlite_url, tmp_path)
    engine.writer.flush()  # what a crash would have left committed
    live = engine.kernel.state.state_hash()
    engine.venue.close()
    with engine.db.begin() as conn:
        conn.execute(update(engine_status).values(heartbeat_at=0))
    dispose_all()
    code, out, err = _replay(monkeypatch, capsys, sqlite_url, "engine-v")
    assert code == 0, out + err
    assert "recorded (event log) none" in out
    assert "verified: the log is intact" in out and f"replayed state hash {live}" in out
    assert "VERIFY FAILED" not in out + err


def test_a_recorded_hash_the_log_does_not_reproduce_fails_verify(sqlite_url, tmp_path, monkeypatch, capsys):
    engine = _trading_engine(sqlite_url, tmp_path)
    engine.shutdown()
    # a well-formed event (its checksum is right) whose hash is not the log's state
    writer = EventStore(sqlite_url).writer("engine-v")
    writer.append(EngineStateRecorded(T0, "v", "0" * 64))
    writer.flush()
    code, _, err = _replay(monkeypatch, capsys, sqlite_url, "engine-v")
    assert code == 1 and "VERIFY FAILED" in err
