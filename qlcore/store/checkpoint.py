"""Moving SQLite's write-ahead log into the database file off the writer's path.

By default SQLite checkpoints inside a commit once the WAL passes 1,000 pages: that commit then
copies the pages and syncs the database file, a pause of several milliseconds in whatever loop made
the commit. A long-running writer that cares about its tail latency (the engine) turns automatic
checkpoints off on its own connections (`no_autocheckpoint`) and runs a `Checkpointer`: a thread with
its own connections that makes PASSIVE checkpoints every `interval_s`. PASSIVE never blocks a writer
or waits for readers; whatever it cannot copy now it copies next time.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("qlcore.store")


def no_autocheckpoint(dbapi_conn: Any, _record: Any = None) -> None:
    """A connect hook (or a direct call on a sqlite3 connection): no checkpoints inside commits."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.close()


class Checkpointer:
    """PASSIVE checkpoints of `paths` every `interval_s`, from a daemon thread, until `stop()`."""

    def __init__(self, paths: Iterable[str | Path], interval_s: float = 0.5) -> None:
        self.paths = [Path(p) for p in paths]
        self.interval_s = interval_s
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        conns = [sqlite3.connect(p, check_same_thread=False) for p in self.paths]
        try:
            while not self._stop.wait(self.interval_s):
                for conn in conns:
                    try:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                        self.checkpoints += 1
                    except sqlite3.Error as exc:  # a busy file is checkpointed next time
                        log.debug("checkpoint skipped: %s", exc)
            for conn in conns:  # a last full copy, so a stopped engine leaves a short WAL
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            for conn in conns:
                conn.close()
