"""Store faults: which errors mean "the store cannot be used right now", and one line that says why.

Every process of the desk meets the same faults: a SQLite file locked past the busy timeout, a file
made read-only or immutable, a full disk, a PostgreSQL server that is down, a connection terminated
under a transaction, a wrong URL. Each of them is reported as one sentence naming the store (its URL
without the password) and what to check, never as a driver traceback.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from qlcore.store.scrub import SECRET_NAME, scrubber

# what the drivers raise when the store cannot be reached or written (not a bug of ours: a fault)
STORE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, DBAPIError, PoolTimeout, sqlite3.Error)
try:  # the PostgreSQL driver is optional for SQLite-only installs
    import psycopg

    STORE_ERRORS += (psycopg.OperationalError,)
except ImportError:  # pragma: no cover - psycopg is a dependency of the project
    pass

# (what the driver says, what it means): the first match names the fault
_HINTS: tuple[tuple[str, str], ...] = (
    ("readonly database", "a store file is read-only: check the permissions and immutable flags of the "
     "database file, its -wal and -shm files and their folder"),
    ("database is locked", "another process holds the database's write lock longer than the busy timeout"),
    ("database or disk is full", "the disk holding the store is full"),
    ("disk i/o error", "the disk holding the store failed a read or write (full, removed or read-only)"),
    ("unable to open database", "the database file cannot be opened: its folder is missing or not writable"),
    ("file is not a database", "the file is not a SQLite database (a wrong path, or a damaged file)"),
    ("connection refused", "no PostgreSQL server answers at that host and port"),
    ("could not translate host name", "the store's host name does not resolve"),
    ("password authentication failed", "PostgreSQL refused the user's credentials"),
    ("does not exist", "the database named in the URL does not exist on the server"),
    ("terminating connection", "the connection to PostgreSQL was terminated by the server"),
    ("server closed the connection", "the connection to PostgreSQL was lost"),
    ("consuming input failed", "the connection to PostgreSQL was lost"),
    ("connection timeout", "PostgreSQL did not answer in time"),
    ("queuepool limit", "every pooled connection to the store is in use (a stuck writer?)"),
)


class StoreUnavailable(Exception):
    """The store cannot be used now; the message names it and the fault."""


def is_store_error(exc: BaseException) -> bool:
    if isinstance(exc, (StoreUnavailable, *STORE_ERRORS)):
        return True
    return isinstance(exc, OSError) and exc.errno is not None


def safe_url(url: str | None) -> str:
    """The URL as it may be shown: without its password, in the userinfo or as a query parameter."""
    if not url:
        return ""
    try:
        parsed = make_url(url)
        secret = [k for k in parsed.query if SECRET_NAME.search(k)]  # ?password=... is left out
        return parsed.difference_update_query(secret).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown without anything up to its last '@', nor a query
        return url.rsplit("@", 1)[-1].split("?", 1)[0]


def driver_message(exc: BaseException) -> str:
    """The driver's own first line, without SQLAlchemy's statement and background-link decoration."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def describe(exc: BaseException, url: str | None = None) -> str:
    """One sentence for a store fault: which store, what the driver said, what it means."""
    said = driver_message(exc)
    lowered = said.lower()
    meaning = next((hint for needle, hint in _HINTS if needle in lowered), None)
    head = f"the store {safe_url(url)} is unavailable: {said}" if url else f"the store is unavailable: {said}"
    # a driver may quote its connection string: the sentence is shown, alerted and stored as an event
    return scrubber(urls=[url] if url else []).text(f"{head} ({meaning})" if meaning else head)


def unwritable_files(url: str) -> list[Path]:
    """For a SQLite store: those of its files (database, -wal, -shm, folder) that exist and cannot be
    written now. SQLite itself would notice some of these only at its next checkpoint (a read-only
    database file behind a writable WAL), or by a SIGBUS (an immutable -shm it has mapped)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return []
    db = Path(parsed.database)
    candidates = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), db.parent]
    return [p for p in candidates if p.exists() and not os.access(p, os.W_OK)]


__all__ = ["STORE_ERRORS", "StoreUnavailable", "describe", "driver_message", "is_store_error", "safe_url",
           "unwritable_files"]
