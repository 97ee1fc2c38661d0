"""The background checkpointer: with automatic checkpoints off, the WAL still gets copied and reset."""
from __future__ import annotations

import sqlite3
import time

from qlcore.store.checkpoint import Checkpointer, no_autocheckpoint


def test_writes_without_autocheckpoint_are_checkpointed_by_the_thread(tmp_path):
    path = tmp_path / "w.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    no_autocheckpoint(writer)
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    writer.execute("CREATE TABLE t (x TEXT)")
    for i in range(3000):  # about 3,000 pages of WAL: past the 1,000 that would trigger SQLite's own
        writer.execute("INSERT INTO t VALUES (?)", ("x" * 1000 + str(i),))
    wal = path.with_name("w.db-wal")
    grown = wal.stat().st_size
    assert grown > 1000 * 4096  # nobody checkpointed inside the commits

    checkpointer = Checkpointer([path], interval_s=0.05).start()
    deadline = time.monotonic() + 10
    while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    # the next commit after a completed checkpoint starts the WAL over from its beginning
    writer.execute("INSERT INTO t VALUES ('after')")
    checkpointer.stop()
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 3001
    frames = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    assert checkpointer.checkpoints >= 2
    assert frames < 10, f"the WAL was not reset: {frames} frames after the background checkpoints"
