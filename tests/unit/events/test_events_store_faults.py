"""A commit that fails, or whose outcome is uncertain, never drops, renumbers or doubles events.

The faults are a real SQLite file under a connection whose `commit` is told to fail: before the
commit (nothing stored) or after it (stored, but the writer hears an error, as when a connection
drops between the server's COMMIT and its answer).
"""
from __future__ import annotations

import sqlite3
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from qlcore.audit.log import AuditLog
from qlcore.events.store import EventStore
from qlcore.events.types import AccountFunded
from qlcore.store.tables import metadata


class _FlakyConnection(sqlite3.Connection):
    """A sqlite3 connection whose next commit fails once: before committing, or after."""

    fail: str | None = None  # "before" | "after" | None, for every connection of the test

    def commit(self) -> None:
        mode, _FlakyConnection.fail = _FlakyConnection.fail, None
        if mode == "before":
            raise sqlite3.OperationalError("disk I/O error")
        super().commit()
        if mode == "after":
            raise sqlite3.OperationalError("disk I/O error")


@pytest.fixture
def flaky_engine(tmp_path: Path):
    path = tmp_path / "flaky.db"
    engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(path, factory=_FlakyConnection))
    metadata.create_all(engine)
    yield engine
    _FlakyConnection.fail = None
    engine.dispose()


def _funded(i: int) -> AccountFunded:
    return AccountFunded(i, "main", D(i))


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_failed_commit_keeps_the_events_under_their_numbers_and_the_retry_stores_each_once(flaky_engine, when):
    store = EventStore(engine=flaky_engine)
    writer = store.writer("s", batch_size=1000)
    writer.extend([_funded(i) for i in (1, 2, 3)])
    writer.flush()
    writer.extend([_funded(i) for i in (4, 5)])
    _FlakyConnection.fail = when
    with pytest.raises(Exception, match="disk I/O error"):
        writer.flush()
    assert writer.pending == 2 and writer.seq == 5  # kept, not renumbered
    assert writer.append(_funded(6)) == 6  # a later event gets the next number, never a reused one
    writer.flush()
    assert [s.seq for s in store.read("s")] == [1, 2, 3, 4, 5, 6]
    assert [e.amount for e in store.events("s")] == [D(i) for i in range(1, 7)]
    assert writer.pending == 0 and writer.committed_seq == 6


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_audit_entry_whose_commit_failed_is_stored_once_and_the_chain_verifies(flaky_engine, when):
    log = AuditLog(engine=flaky_engine, batch_size=100)
    log.record("user:a", "first", "account")
    log.flush()
    log.record("user:a", "second", "account")
    _FlakyConnection.fail = when
    with pytest.raises(Exception, match="disk I/O error"):
        log.flush()
    assert log.pending == 1
    log.record("user:a", "third", "account")
    log.flush()
    assert [e.action for e in log.entries()] == ["first", "second", "third"]
    assert log.verify().ok
