"""The dashboards' one view of the store: engine status, commands, audit, runs and job runs.

Dashboards never touch engine objects: they read what the engine publishes (`engine_status`,
rewritten about twice a second) and the tables other processes write, and they write only
commands. One `ReadModel` serves every session of a server; the engine row is cached for a short
time (`cache_s`) so that fifty open pages cost one query per period, not fifty.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd
from sqlalchemy import Engine, MetaData, Table, desc, func, inspect, or_, select
from sqlalchemy.exc import SQLAlchemyError

from qlcore.audit.lineage import Lineage, trace
from qlcore.audit.log import AuditEntry, AuditLog, Verification
from qlcore.control.commands import Command, CommandQueue
from qlcore.engine.status import EngineStatus
from qlcore.store.db import connect
from qlcore.store.runs import RunRecord, list_parity, list_runs, load_equity
from qlcore.store.tables import audit_log, engine_status, metadata, submissions

NS = 1_000_000_000
STALE_AFTER_S = 3.0  # the engine rewrites its row about twice a second: six missed beats is stale


@dataclass(frozen=True, slots=True)
class EngineView(EngineStatus):
    """One engine's published status (its `engine_status` row) as read at `read_at` (wall ns)."""

    read_at: int
    stale_after_s: float = STALE_AFTER_S
    version: str = ""  # changes whenever the snapshot text changes

    @property
    def age_s(self) -> float:
        """Seconds since the engine's last heartbeat."""
        return max(0.0, (self.read_at - self.heartbeat_at) / NS)

    @property
    def stale(self) -> bool:
        return self.age_s > self.stale_after_s or self.state == "stopped"

    @property
    def account(self) -> dict[str, Any]:
        return self.snapshot.get("account") or {}

    @property
    def trading_mode(self) -> str:
        """ACTIVE, REDUCING or HALTED, as the engine's risk state says."""
        return str(self.account.get("mode") or "UNKNOWN")


@dataclass
class _Cache:
    at: float = 0.0
    views: list[EngineView] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)


class ReadModel:
    """Read-only queries the dashboards need, over one store URL."""

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Engine | None = None,
        stale_after_s: float = STALE_AFTER_S,
        cache_s: float = 0.05,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.engine = engine if engine is not None else connect(url)
        self.stale_after_s = stale_after_s
        self.cache_s = cache_s
        self.clock = clock
        self._cache = _Cache()
        self._lock = threading.Lock()
        self.reads = 0  # how many times the engine table was queried (the cache's effect, for benchmarks)
        self._slow: dict[str, tuple[float, Any]] = {}

    def cached(self, key: str, ttl_s: float, fetch: Callable[[], Any]) -> Any:
        """`fetch()`, reused for `ttl_s` seconds by every caller (for slow-moving tables shown on every page)."""
        now = time.monotonic()
        hit = self._slow.get(key)
        if hit is not None and now - hit[0] < ttl_s:
            return hit[1]
        value = fetch()
        self._slow[key] = (now, value)
        return value

    # --- the engine's read model -------------------------------------------------------------------
    def engines(self) -> list[EngineView]:
        """Every engine's status, freshest heartbeat first (cached for `cache_s`)."""
        with self._lock:
            now = time.monotonic()
            if now - self._cache.at < self.cache_s:
                return self._cache.views
            with self.engine.connect() as conn:
                rows = conn.execute(select(engine_status).order_by(desc(engine_status.c.heartbeat_at))).all()
            self.reads += 1
            read_at = self.clock()
            views = []
            texts: dict[str, str] = {}
            for r in rows:
                old = next((v for v in self._cache.views if v.engine_id == r.engine_id), None)
                if old is not None and self._cache.texts.get(r.engine_id) == r.snapshot:
                    snap, version = old.snapshot, old.version  # unchanged text: no need to decode again
                else:
                    snap, version = _decode_snapshot(r.engine_id, r.snapshot), f"{r.heartbeat_at}:{len(r.snapshot)}"
                texts[r.engine_id] = r.snapshot
                views.append(EngineView(
                    r.engine_id, int(r.pid), r.host, r.state, r.mode, int(r.started_at), int(r.heartbeat_at),
                    snap, read_at, self.stale_after_s, version,
                ))
            self._cache = _Cache(now, views, texts)
            return views

    def status(self, engine_id: str | None = None) -> EngineView | None:
        """One engine's status (the freshest one when `engine_id` is None); None if none published."""
        for view in self.engines():
            if engine_id is None or view.engine_id == engine_id:
                return view
        return None

    def store_ok(self) -> tuple[bool, str]:
        """Can the store be queried now? (ok, the backend's name or the error)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(func.count()).select_from(engine_status))
            return True, self.engine.dialect.name
        except SQLAlchemyError as exc:
            return False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"

    # --- commands ----------------------------------------------------------------------------------
    def commands(self, limit: int = 50) -> list[Command]:
        """The latest commands, newest first, with their status and outcome."""
        return CommandQueue(engine=self.engine).history(limit)

    # --- audit -------------------------------------------------------------------------------------
    def audit_search(self, text: str = "", *, actor: str = "", action: str = "", limit: int = 200) -> list[AuditEntry]:
        """Audit entries newest first; `text` matches the subject or details, `actor`/`action` are prefixes."""
        c = audit_log.c
        q = select(audit_log).order_by(c.seq.desc()).limit(max(1, min(int(limit), 5000)))
        if actor:
            q = q.where(c.actor.like(_like_prefix(actor), escape="\\"))
        if action:
            q = q.where(c.action.like(_like_prefix(action), escape="\\"))
        if text:
            pattern = "%" + _escape_like(text) + "%"
            q = q.where(or_(c.subject.like(pattern, escape="\\"), c.details.like(pattern, escape="\\")))
        with self.engine.connect() as conn:
            return [AuditEntry(int(r.seq), int(r.ts), r.actor, r.action, r.subject, r.details, r.prev_hash, r.hash)
                    for r in conn.execute(q)]

    def audit_verify(self) -> Verification:
        """Walk the audit chain (see `AuditLog.verify`)."""
        return AuditLog(engine=self.engine).verify()

    def trace(self, order_id: str) -> list[Lineage]:
        """An order's lineage from the audit log, newest run first."""
        if not order_id.strip():
            raise ValueError("order id: give an order id such as O-3 or <stream>/O-3")
        return trace(AuditLog(engine=self.engine), order_id.strip())

    # --- research ----------------------------------------------------------------------------------
    def runs(self, limit: int = 50) -> list[RunRecord]:
        return list_runs(self.engine, limit)

    def run_equity(self, run_id: str) -> pd.Series:
        return load_equity(self.engine, run_id)

    def parity_verdicts(self, limit: int = 50) -> list[dict[str, Any]]:
        """Parity verdicts, newest first: those recorded by submitted notebooks and those of `qlcore parity`.

        Each: source, subject (notebook or strategy and data), verdict, by, created_at, detail."""
        c = submissions.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(c.id, c.notebook, c.author, c.status, c.created_at, c.results)
                .order_by(c.created_at.desc()).limit(limit)
            ).all()
        out = []
        for r in rows:
            results = orjson.loads(r.results) if r.results else {}
            verdicts = {k: v for k, v in results.items() if "parity" in k.lower()} if isinstance(results, dict) else {}
            if verdicts:
                out.append({"source": "notebook", "subject": r.notebook, "by": r.author, "created_at": r.created_at,
                            "verdict": "; ".join(f"{k}: {v}" for k, v in verdicts.items()),
                            "detail": f"submission {r.id} ({r.status})"})
        for p in list_parity(self.engine, limit):
            rep = p.report
            params = ", ".join(f"{k}={v}" for k, v in rep.get("params", {}).items())
            first = (rep.get("first_difference") or {}).get("text")
            paper = rep.get("kind") == "paper"  # `qlcore parity --paper`: the paper engine against the backtest
            sides = (("backtest", "trades_backtest"), ("paper", "trades_paper")) if paper else (
                ("engine", "trades_engine"), ("vectorbt", "trades_vectorbt"))
            detail = (", ".join(f"{name} {rep.get(key)}" for name, key in sides)
                      + f", differing {rep.get('differing_trades')}" + (f"; first: {first}" if first else ""))
            detail = "trades " + detail
            out.append({"source": "qlcore parity --paper" if paper else "qlcore parity", "by": p.user, "created_at": p.created_at, "verdict": p.verdict,
                        "subject": f"{p.strategy}({params}) on {', '.join(p.symbols)}, fee {rep.get('fee_bps', 0):g} bps",
                        "detail": detail})
        out.sort(key=lambda v: v["created_at"], reverse=True)
        return out[:limit]

    # --- scheduled jobs ----------------------------------------------------------------------------
    def job_runs(self, limit: int = 20) -> pd.DataFrame:
        """The scheduler's latest job runs, newest first; an empty frame while there is no such table."""
        table = self._job_table()
        if table is None:
            return pd.DataFrame()
        order = next((table.c[n] for n in ("started_at", "ts_started", "id", "created_at") if n in table.c), None)
        q = select(table).limit(limit)
        if order is not None:
            q = q.order_by(order.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in table.c])

    def _job_table(self) -> Table | None:
        # the scheduler's table is declared in tables.py by its own package; tolerate its absence
        for name in ("job_runs", "scheduler_runs", "job_run"):
            if name in metadata.tables:
                return metadata.tables[name]
        names = [n for n in inspect(self.engine).get_table_names() if "job" in n and "run" in n]
        if not names:
            return None
        return Table(names[0], MetaData(), autoload_with=self.engine)


def _decode_snapshot(engine_id: str, text: str) -> dict[str, Any]:
    try:
        snap = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"engine_status[{engine_id}].snapshot: not JSON ({exc})") from None
    if not isinstance(snap, dict):
        raise ValueError(f"engine_status[{engine_id}].snapshot: expected an object, got {type(snap).__name__}")
    return snap


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_prefix(text: str) -> str:
    return _escape_like(text) + "%"
