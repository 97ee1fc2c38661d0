"""Engine factory: where the store lives and how connections are set up."""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex

from qlcore.store.tables import metadata

_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    """The checkout's root when running from a clone, else the working directory."""
    if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "qlcore").is_dir():
        return _ROOT
    return Path.cwd()


def project_data_dir() -> Path:
    """`QLCORE_DATA_DIR`, else the checkout's `data/` (when running from a clone), else `./data`."""
    env = os.environ.get("QLCORE_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return project_root() / "data"


def default_url() -> str:
    return f"sqlite:///{project_data_dir() / 'qlcore.db'}"


def resolve_url(url: str | None = None) -> str:
    """The store URL: the argument, else `QLCORE_DB_URL`, else the SQLite file under data/."""
    url = url or os.environ.get("QLCORE_DB_URL") or default_url()
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


SYNC_LEVELS = ("FULL", "NORMAL")


def sqlite_synchronous() -> str:
    """`QLCORE_SQLITE_SYNC`: FULL (the default: a commit survives power loss, one fsync each) or
    NORMAL (a commit survives a crash of the process, not of the machine; no fsync per commit)."""
    level = os.environ.get("QLCORE_SQLITE_SYNC", "FULL").upper()
    if level not in SYNC_LEVELS:
        raise ValueError(f"QLCORE_SQLITE_SYNC={level!r}: choose one of {', '.join(SYNC_LEVELS)}")
    return level


def sqlite_busy_timeout_ms() -> int:
    """`QLCORE_SQLITE_BUSY_MS` (default 10,000): how long a writer waits for another's lock before the
    store counts as failed."""
    text = os.environ.get("QLCORE_SQLITE_BUSY_MS", "10000")
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"QLCORE_SQLITE_BUSY_MS={text!r}: expected a whole number of milliseconds >= 0")
    return value


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={sqlite_synchronous()}")
    cur.execute(f"PRAGMA busy_timeout={sqlite_busy_timeout_ms()}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


_ENGINES: dict[str, Engine] = {}


def connect(url: str | None = None, *, create: bool = True) -> Engine:
    """An `Engine` for the store, with its tables created on first use. Engines are shared per URL."""
    url = resolve_url(url)
    engine = _ENGINES.get(url)
    if engine is not None:
        return engine
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            _create_private(Path(parsed.database))
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if create:
        metadata.create_all(engine)
        _add_missing_columns(engine)
        _add_missing_indexes(engine)
    _ENGINES[url] = engine
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Columns declared since a store's tables were made (`create_all` adds none to existing tables).

    Only nullable columns without a default are ever added (the rows already stored get NULL, which
    the code reads as "from before"); a missing column of another kind is refused, naming it."""
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
        missing = [c for c in table.columns if c.name not in have]
        if not missing:
            continue
        for column in missing:
            if not column.nullable or column.server_default is not None:
                raise RuntimeError(f"store {engine.url.render_as_string(hide_password=True)}: table {table.name} lacks "
                                   f"column {column.name}, which cannot be added in place; migrate the store first")
        preparer = engine.dialect.identifier_preparer
        for column in missing:
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} "
                                         f"ADD COLUMN {preparer.format_column(column)} {kind}")
            except Exception:  # another process upgrading the same store at the same moment
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name, schema=table.schema)}:
                    raise


def _add_missing_indexes(engine: Engine) -> None:
    """Indexes declared since a store's tables were made (`create_all` makes none on existing tables)."""
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        if not table.indexes:
            continue
        have = {ix["name"] for ix in inspector.get_indexes(table.name, schema=table.schema)}
        missing = [ix for ix in table.indexes if ix.name not in have]
        if missing:
            with engine.begin() as conn:
                for ix in missing:
                    conn.execute(CreateIndex(ix, if_not_exists=True))


def _create_private(path: Path) -> None:
    """Create the SQLite file readable by its owner only (0600) before SQLite does (it would use 0644;
    its WAL and shared-memory files copy the database's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another process made it first
            pass


def dispose_all() -> None:
    """Close every pooled connection (tests, and before a process forks)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
