"""Client order ids never repeat: across restarts, a lost tail of the log, and a new store beside an
existing venue ledger. The venue refuses an id it already holds, so a repeat would be a lost order."""
from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from sqlalchemy import delete

from qlcore.engine.service import EngineConfig, EngineService
from qlcore.events.types import OrderInitialized
from qlcore.model.enums import OrderSide, OrderStatus
from qlcore.store.db import dispose_all
from qlcore.store.tables import events as events_table
from tests.unit.engine.test_engine_recovery import _bar, _crash

NS = 1_000_000_000


def _engine(url: str, venue: Path) -> EngineService:
    engine = EngineService(EngineConfig(engine_id="ids", url=url, venue_path=venue, symbols=("AAPL",), speed=1e-6,
                                        fill_on_arrival=True))  # the test counts fills as it sends
    engine.start()
    engine.risk.set_reference_price("AAPL", Decimal(100), engine.clock.now)  # manual orders before any bar
    return engine


def _send(engine: EngineService, n: int) -> list[str]:
    """`n` buys that reach the venue and fill there (the venue commits them)."""
    ids = [engine.kernel.submit_order("manual", "AAPL", OrderSide.BUY, 1) for _ in range(n)]
    engine.writer.flush()
    # a bar after both clocks: a venue whose log lost its tail is ahead of the engine's clock
    engine.on_bar(_bar("AAPL", max(engine.clock.now, engine.venue.clock) + NS, 100.0))
    engine.venue.advance_to(engine.clock.now)
    engine.venue.flush()
    return ids


def _venue_ids(venue: Path) -> set[str]:
    """Every client order id the venue ledger holds, read from the file itself."""
    conn = sqlite3.connect(venue)
    try:
        return {row[0] for row in conn.execute("SELECT client_order_id FROM venue_orders")}
    finally:
        conn.close()


def test_ids_after_a_restart_with_a_lost_log_tail_do_not_collide_with_the_venue_ledger(sqlite_url, tmp_path):
    venue = tmp_path / "venue.sqlite"
    engine = _engine(sqlite_url, venue)
    first = _send(engine, 3)
    engine.writer.flush()
    keep = engine.writer.committed_seq
    second = _send(engine, 3)  # at the venue; then the log loses everything after `keep`
    engine.writer.flush()
    _crash(engine)
    with engine.db.begin() as conn:
        conn.execute(delete(events_table).where(events_table.c.stream == "engine-ids", events_table.c.seq > keep))
    dispose_all()
    at_venue = _venue_ids(venue)
    assert set(first) | set(second) <= at_venue

    again = _engine(sqlite_url, venue)
    new = _send(again, 3)
    assert not set(new) & at_venue
    assert all(again.kernel.state.orders[oid].status is OrderStatus.FILLED for oid in new)
    again.shutdown()


def test_a_new_store_beside_an_existing_venue_ledger_gets_ids_the_venue_has_never_seen(sqlite_url, tmp_path):
    venue = tmp_path / "venue.sqlite"
    engine = _engine(sqlite_url, venue)
    old = _send(engine, 3)
    engine.shutdown()
    dispose_all()

    fresh = _engine(f"sqlite:///{tmp_path / 'other.db'}", venue)  # a brand-new store, the same venue ledger
    new = _send(fresh, 3)
    assert not set(new) & set(old)
    assert not set(new) & (_venue_ids(venue) - set(new))
    assert all(fresh.kernel.state.orders[oid].status is OrderStatus.FILLED for oid in new)
    fresh.shutdown()


def test_every_start_is_a_new_session_of_ids(sqlite_url, tmp_path):
    venue = tmp_path / "venue.sqlite"
    seen: list[str] = []
    for _ in range(3):
        engine = _engine(sqlite_url, venue)
        seen += _send(engine, 2)
        engine.shutdown()
        dispose_all()
    assert len(set(seen)) == len(seen) == 6
    sessions = {oid.rsplit("-", 1)[0] for oid in seen}
    assert len(sessions) == 3
    logged = [e.order_id for e in _events(sqlite_url) if type(e) is OrderInitialized]
    assert logged == seen


def _events(url: str):
    from qlcore.events.store import EventStore

    return EventStore(url).events("engine-ids")
