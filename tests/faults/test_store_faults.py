"""Store faults under a running engine: each ends SUSPENDED with the reason, sends nothing to the venue
while its log is not durable, and trades again after the store is back and the venue is reconciled.

Faults are real: a second SQLite connection holding the write lock past the busy timeout, database
files made immutable (chattr +i, as root), a PostgreSQL backend terminated by `pg_terminate_backend`
while it waits inside the engine's commit. Every case ends with a clean restart on the same store.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from qlcore.engine.service import EngineConfig, EngineService
from qlcore.engine.status import RUNNING, SUSPENDED
from qlcore.events.facts import StoreFaulted, StoreRecovered
from qlcore.events.store import EventStore
from qlcore.events.types import OrderInitialized
from qlcore.model.enums import OrderSide
from qlcore.model.market import Bar
from qlcore.store.db import dispose_all

NS = 1_000_000_000
T0 = 1_700_000_000 * NS


def _engine(url: str, tmp_path: Path) -> EngineService:
    # the test feeds its own bars: the replay feed is slowed so that none of its bars comes between
    engine = EngineService(EngineConfig(engine_id="f", url=url, venue_path=tmp_path / "venue.sqlite",
                                        symbols=("AAPL",), speed=1e-6, heartbeat_s=0.0))
    engine.start()
    return engine


def _bar(ts: int, px: float = 100.0) -> Bar:
    return Bar("AAPL", ts, px, px + 1, px - 1, px, 1_000_000.0)


def _until(engine: EngineService, state: str, *, limit_s: float = 60.0) -> None:
    """Turn the engine until it reaches `state` (generous bound: a loaded machine is slow, never wrong)."""
    deadline = time.monotonic() + limit_s
    while engine.state != state:
        assert time.monotonic() < deadline, f"engine still {engine.state} ({engine.store_fault})"
        engine.step()


def _venue_orders(venue_path: Path) -> list[str]:
    with sqlite3.connect(venue_path) as conn:
        return [r[0] for r in conn.execute("SELECT client_order_id FROM venue_orders ORDER BY seq")]


def _logged_orders(url: str) -> list[str]:
    """Client order ids whose OrderInitialized is durable (the read checks the log is gap-free and intact)."""
    dispose_all()
    return [e.order_id for e in EventStore(url).events("engine-f") if type(e) is OrderInitialized]


def _assert_write_ahead(url: str, venue_path: Path) -> list[str]:
    """No order at the venue without its events durable in the log (the figure must be 0)."""
    logged = _logged_orders(url)
    not_durable = [o for o in _venue_orders(venue_path) if o not in logged]
    assert not_durable == []
    return logged


def _fault_cycle(url: str, tmp_path: Path, inject: Callable[[EngineService], Callable[[], None]],
                 *, lasting: bool = True) -> EngineService:
    """Run an engine, submit an order, inject the fault on the turn that must commit it, check the
    engine suspends without sending it, clear the fault, check it recovers, sends it once, restarts.
    A `lasting` fault is still there for a few more turns (a fault that ends inside the first turn,
    like a terminated connection, may already be retried on the next)."""
    engine = _engine(url, tmp_path)
    venue_path = tmp_path / "venue.sqlite"
    engine.on_bar(_bar(T0))
    oid = engine.kernel.submit_order("manual", "AAPL", OrderSide.BUY, 10)
    clear = inject(engine)
    try:
        engine.step()
        assert engine.state == SUSPENDED
        assert engine.store_fault is not None and "unavailable" in engine.store_fault.reason
        # more turns while the fault lasts: nothing reaches the venue, nothing is dropped
        for _ in range(3 if lasting else 0):
            engine.step()
            assert engine.state == SUSPENDED
        assert oid not in _venue_orders(venue_path)
        assert any(a["source"] == "store" and a["level"] == "critical" for a in engine.alerts)
    finally:
        clear()
    _until(engine, RUNNING)
    engine.on_bar(_bar(T0 + 60 * NS, 101.0))
    engine.step()
    assert _venue_orders(venue_path).count(oid) == 1
    logged = _assert_write_ahead(url, venue_path)
    assert logged.count(oid) == 1
    events = EventStore(url).events("engine-f")
    assert [type(e) for e in events if type(e) in (StoreFaulted, StoreRecovered)] == [StoreFaulted, StoreRecovered]
    held = engine.kernel.state.state_hash()
    engine.shutdown()
    dispose_all()

    again = _engine(url, tmp_path)  # a clean restart on the same store and venue ledger
    assert again.state == RUNNING and again.reconciliation.passed
    assert again.kernel.state.orders[oid].filled_quantity == 10
    assert again.kernel.state.state_hash() == held
    again.shutdown()
    dispose_all()
    return engine


def test_a_writer_lock_held_past_the_busy_timeout_suspends_then_recovers(tmp_path, monkeypatch):
    monkeypatch.setenv("QLCORE_SQLITE_BUSY_MS", "50")
    url = f"sqlite:///{tmp_path / 'store.db'}"

    def hold_lock(engine: EngineService) -> Callable[[], None]:
        other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the write lock, held by another process's connection
        return lambda: (other.execute("ROLLBACK"), other.close())

    engine = _fault_cycle(url, tmp_path, hold_lock)
    assert engine.counters.store_faults == 1


def _chattr(flag: str, paths: list[Path]) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


def _can_make_immutable(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.write_text("x")
    try:
        _chattr("+i", [probe])
    except (OSError, subprocess.CalledProcessError):
        return False
    _chattr("-i", [probe])
    return True


@pytest.mark.parametrize("files", [("",), ("", "-wal", "-shm")], ids=["database-file", "database-wal-and-shm"])
def test_an_immutable_store_suspends_before_sqlite_meets_it_then_recovers(tmp_path, files, requirement):
    requirement(_can_make_immutable(tmp_path), "chattr +i needs root (CAP_LINUX_IMMUTABLE) on a filesystem with flags")
    url = f"sqlite:///{tmp_path / 'store.db'}"

    def immutable(engine: EngineService) -> Callable[[], None]:
        paths = [Path(f"{tmp_path / 'store.db'}{suffix}") for suffix in files]
        paths = [p for p in paths if p.exists()]
        _chattr("+i", paths)
        return lambda: _chattr("-i", paths)

    _fault_cycle(url, tmp_path, immutable)


def test_a_postgresql_connection_terminated_mid_commit_suspends_then_recovers(pg_url, tmp_path):
    locker = create_engine(pg_url)

    def terminate_mid_commit(engine: EngineService) -> Callable[[], None]:
        # the engine's commit of this turn waits behind a table lock; its backend is then terminated
        conn = locker.connect()
        conn.execute(text("BEGIN"))
        conn.execute(text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
        done = threading.Event()

        def kill_the_waiter() -> None:
            deadline = time.monotonic() + 60
            while not done.is_set() and time.monotonic() < deadline:
                with locker.connect() as probe:
                    pids = probe.execute(text(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'INSERT INTO events%'")).scalars().all()
                    for pid in pids:
                        probe.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                    if pids:
                        conn.execute(text("ROLLBACK"))
                        conn.close()
                        return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_the_waiter, daemon=True)
        killer.start()

        def clear() -> None:
            done.set()
            killer.join(timeout=60)
            if not conn.closed:
                conn.execute(text("ROLLBACK"))
                conn.close()

        return clear

    _fault_cycle(pg_url, tmp_path, terminate_mid_commit, lasting=False)
    reasons = [e.reason for e in EventStore(pg_url).events("engine-f") if type(e) is StoreFaulted]
    assert len(reasons) == 1 and "connection to PostgreSQL was lost" in reasons[0]
    locker.dispose()


def test_a_stop_while_suspended_ends_cleanly_and_the_restart_rebuilds_from_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv("QLCORE_SQLITE_BUSY_MS", "50")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    venue_path = tmp_path / "venue.sqlite"
    engine = _engine(url, tmp_path)
    engine.on_bar(_bar(T0))
    oid = engine.kernel.submit_order("manual", "AAPL", OrderSide.BUY, 10)
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        engine.step()
        assert engine.state == SUSPENDED
        engine.shutdown()  # the order's events never became durable: it must not reach the venue
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert engine.state == "stopped"
    assert oid not in _venue_orders(venue_path)
    dispose_all()
    again = _engine(url, tmp_path)
    assert again.state == RUNNING and again.reconciliation.passed
    assert oid not in again.kernel.state.orders  # never durable, never sent: as if never made
    again.shutdown()
    dispose_all()


# --- the command line meets a failed store: one sentence and exit 3, never a traceback ----------------
QLCORE = Path(sys.executable).with_name("qlcore")


def _qlcore(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "QLCORE_DB_URL"}
    env["QLCORE_DATA_DIR"] = str(data_dir)
    return subprocess.run([str(QLCORE), *args], capture_output=True, text=True, env=env, timeout=300)


def test_a_wrong_postgresql_port_is_one_line_without_the_password(tmp_path):
    proc = _qlcore("status", "--db", "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test", data_dir=tmp_path)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "port 1" in proc.stderr and "no PostgreSQL server answers" in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout


def test_halt_against_an_immutable_store_says_so_in_one_line(tmp_path, requirement):
    requirement(_can_make_immutable(tmp_path), "chattr +i needs root (CAP_LINUX_IMMUTABLE)")
    store = tmp_path / "qlcore.db"
    assert "no engine" in _qlcore("status", data_dir=tmp_path).stderr  # the store is created
    files = [p for p in (store, Path(f"{store}-wal"), Path(f"{store}-shm")) if p.exists()]
    _chattr("+i", files)
    from qlcore.control.keys import provision
    from qlcore.control.users import UserStore
    from qlcore.engine.cli import resolve_user

    provision(UserStore(tmp_path / "users.toml"), {resolve_user(None): "admin"})  # the sender's own signing key
    try:
        proc = _qlcore("halt", "--reason", "test", data_dir=tmp_path)
    finally:
        _chattr("-i", files)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "is unavailable" in proc.stderr


@pytest.fixture
def small_disk(tmp_path, requirement):
    """A 4 MB tmpfs of its own (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    requirement(done.returncode == 0, f"mounting a tmpfs needs root: {done.stderr.decode().strip()}")
    yield mount
    dispose_all()
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_suspends_then_recovers_when_space_is_freed(small_disk, tmp_path):
    url = f"sqlite:///{small_disk / 'store.db'}"
    filler = small_disk / "filler"

    def fill_the_disk(engine: EngineService) -> Callable[[], None]:
        with sqlite3.connect(small_disk / "store.db") as conn:  # the WAL's pages given back: the next
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # commit must find new space on the disk
        with open(filler, "wb") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass
        return filler.unlink

    _fault_cycle(url, tmp_path, fill_the_disk)
