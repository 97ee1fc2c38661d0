"""The paper venue's durable ledger: one SQLite file (WAL, synchronous=FULL) of venue orders and fills.

The venue writes it only through `commit`, one transaction per flush; everything else reads. The
primary key of `venue_orders` is the client order id, so the file itself refuses a second order with
one id; `venue_fills.trade_id` is unique, so a fill cannot be recorded twice.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from qlcore.store.db import sqlite_synchronous

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS venue_orders (
    client_order_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    venue_order_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    order_type TEXT NOT NULL,
    quantity TEXT NOT NULL,
    price TEXT,
    trigger_price TEXT,
    time_in_force TEXT NOT NULL,
    submitted_ts INTEGER NOT NULL,
    ack_ts INTEGER NOT NULL,
    acknowledged INTEGER NOT NULL,
    status TEXT NOT NULL,
    filled TEXT NOT NULL,
    fees TEXT NOT NULL,
    fills INTEGER NOT NULL,
    reason TEXT NOT NULL,
    day INTEGER,
    triggered INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS venue_orders_status ON venue_orders (status, seq);
CREATE TABLE IF NOT EXISTS venue_fills (
    seq INTEGER PRIMARY KEY,
    trade_id TEXT NOT NULL UNIQUE,
    client_order_id TEXT NOT NULL REFERENCES venue_orders (client_order_id),
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity TEXT NOT NULL,
    price TEXT NOT NULL,
    fee TEXT NOT NULL,
    ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS venue_fills_order ON venue_fills (client_order_id, seq);
CREATE TABLE IF NOT EXISTS venue_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

ORDER_COLUMNS = (
    "client_order_id",
    "seq",
    "venue_order_id",
    "symbol",
    "side",
    "order_type",
    "quantity",
    "price",
    "trigger_price",
    "time_in_force",
    "submitted_ts",
    "ack_ts",
    "acknowledged",
    "status",
    "filled",
    "fees",
    "fills",
    "reason",
    "day",
    "triggered",
)
FILL_COLUMNS = ("seq", "trade_id", "client_order_id", "symbol", "side", "quantity", "price", "fee", "ts")

_UPSERT_ORDER = (
    f"INSERT INTO venue_orders ({', '.join(ORDER_COLUMNS)}) VALUES ({', '.join('?' * len(ORDER_COLUMNS))}) "
    "ON CONFLICT (client_order_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ORDER_COLUMNS if c not in ("client_order_id", "seq"))
)
_INSERT_FILL = f"INSERT INTO venue_fills ({', '.join(FILL_COLUMNS)}) VALUES ({', '.join('?' * len(FILL_COLUMNS))})"
_ORDER_SELECT = f"SELECT {', '.join(ORDER_COLUMNS)} FROM venue_orders"
_FILL_SELECT = f"SELECT {', '.join(FILL_COLUMNS)} FROM venue_fills"


class PaperLedger:
    """The SQLite file behind a `PaperVenue`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"paper venue ledger path {self.path} is a directory, not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: the only transactions are the explicit ones in `commit`
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)  # one user at a time: the engine loop
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={sqlite_synchronous()}")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ValueError(f"paper venue ledger {self.path} is not a usable SQLite file: {exc}") from exc

    # --- writing ------------------------------------------------------------------------------
    def commit(
        self, orders: Sequence[tuple[Any, ...]], fills: Sequence[tuple[Any, ...]], meta: dict[str, str]
    ) -> None:
        """Write order rows (insert or update), new fills and meta values in one transaction."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if orders:
                conn.executemany(_UPSERT_ORDER, orders)
            if fills:
                conn.executemany(_INSERT_FILL, fills)
            if meta:
                conn.executemany(
                    "INSERT INTO venue_meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    meta.items(),
                )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # --- reading ------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM venue_meta").fetchall())

    def order(self, client_order_id: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._conn.execute(
            f"{_ORDER_SELECT} WHERE client_order_id = ?", (client_order_id,)
        ).fetchone()
        return row

    def orders_with_status(self, statuses: Iterable[str]) -> list[tuple[Any, ...]]:
        wanted = tuple(statuses)
        marks = ", ".join("?" * len(wanted))
        return self._conn.execute(f"{_ORDER_SELECT} WHERE status IN ({marks}) ORDER BY seq", wanted).fetchall()

    def order_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM venue_orders").fetchone()[0])

    def last_order_seq(self) -> int:
        return int(self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM venue_orders").fetchone()[0])

    def last_fill_seq(self) -> int:
        return int(self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM venue_fills").fetchone()[0])

    def fills(self, client_order_id: str | None = None) -> list[tuple[Any, ...]]:
        if client_order_id is None:
            return self._conn.execute(f"{_FILL_SELECT} ORDER BY seq").fetchall()
        return self._conn.execute(
            f"{_FILL_SELECT} WHERE client_order_id = ? ORDER BY seq", (client_order_id,)
        ).fetchall()

    def fill_quantities(self) -> list[tuple[str, str, str]]:
        """(symbol, side, quantity) of every fill, in the order they happened."""
        return self._conn.execute("SELECT symbol, side, quantity FROM venue_fills ORDER BY seq").fetchall()

    def close(self) -> None:
        self._conn.close()
