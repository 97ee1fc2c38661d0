"""The engine's row in `engine_status`: one running engine per id, its heartbeat, and its read model.

`EngineLease.acquire` refuses to start a second engine with the same id while the first is alive:
its heartbeat is younger than `stale_after_s`, unless it ran on this host and its process is gone
(a crashed engine is taken over at once, which is what a restart after SIGKILL needs). The
heartbeat is the wall clock in nanoseconds; the snapshot is the JSON document that `qlcore status`,
`qlcore positions` and the dashboards read (see `qlcore.engine.snapshot`).
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, select, update

from qlcore.store.db import connect
from qlcore.store.liveness import holder_alive
from qlcore.store.tables import engine_status

STARTING, RECONCILING, RUNNING, BLOCKED, SUSPENDED, STOPPING, STOPPED = (
    "starting",
    "reconciling",
    "running",
    "blocked",
    "suspended",  # the store failed: nothing reaches the venue until the log is durable and reconciled
    "stopping",
    "stopped",
)
NS = 1_000_000_000


class EngineAlreadyRunning(RuntimeError):
    """Another live engine holds the id."""


@dataclass(frozen=True, slots=True)
class EngineStatus:
    engine_id: str
    pid: int
    host: str
    state: str
    mode: str
    started_at: int
    heartbeat_at: int
    snapshot: dict[str, Any]

    def heartbeat_age_s(self, now_ns: int | None = None) -> float:
        return ((now_ns or time.time_ns()) - self.heartbeat_at) / NS

    def alive(self, stale_after_s: float = 5.0) -> bool:
        return self.state not in (STOPPED,) and self.heartbeat_age_s() < stale_after_s


def read_status(url: str | None = None, engine_id: str | None = None, *, engine: Engine | None = None) -> list[EngineStatus]:
    """Every engine's row (or the one of `engine_id`), newest heartbeat first."""
    db = engine if engine is not None else connect(url)
    query = select(engine_status).order_by(engine_status.c.heartbeat_at.desc())
    if engine_id is not None:
        query = query.where(engine_status.c.engine_id == engine_id)
    with db.connect() as conn:
        rows = conn.execute(query).all()
    return [
        EngineStatus(
            r.engine_id, r.pid, r.host, r.state, r.mode, r.started_at, r.heartbeat_at, orjson.loads(r.snapshot)
        )
        for r in rows
    ]


class EngineLease:
    """This process's claim on `engine_id`, renewed by `beat`."""

    def __init__(self, engine: Engine, engine_id: str, mode: str, *, stale_after_s: float = 5.0) -> None:
        self.engine = engine
        self.engine_id = engine_id
        self.mode = mode
        self.stale_after_s = stale_after_s
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.started_at = time.time_ns()

    def acquire(self) -> None:
        """Take the row, or raise `EngineAlreadyRunning` naming the holder."""
        c = engine_status.c
        now = time.time_ns()
        with self.engine.begin() as conn:
            row = conn.execute(select(engine_status).where(c.engine_id == self.engine_id)).first()
            if row is not None and row.state != STOPPED and row.pid != self.pid:
                age = (now - row.heartbeat_at) / NS
                if holder_alive(row.host, row.pid, row.heartbeat_at, self.stale_after_s, now):
                    raise EngineAlreadyRunning(
                        f"engine {self.engine_id!r} is already running (pid {row.pid} on {row.host}, "
                        f"heartbeat {age:.1f} s ago); stop it first or use another --engine-id"
                    )
            values = dict(
                pid=self.pid,
                host=self.host,
                state=STARTING,
                mode=self.mode,
                started_at=self.started_at,
                heartbeat_at=now,
                snapshot="{}",
            )
            if row is None:
                conn.execute(engine_status.insert().values(engine_id=self.engine_id, **values))
            else:
                # conditional on the row we saw: a racing engine that took it meanwhile wins
                done = conn.execute(
                    update(engine_status)
                    .where(c.engine_id == self.engine_id, c.pid == row.pid, c.heartbeat_at == row.heartbeat_at)
                    .values(**values)
                )
                if done.rowcount != 1:
                    raise EngineAlreadyRunning(f"engine {self.engine_id!r} was taken by another process meanwhile")

    def beat(self, state: str, snapshot: dict[str, Any] | None = None) -> None:
        """Renew the heartbeat (and the snapshot, when given). Raises if another process took the row."""
        values: dict[str, Any] = {"state": state, "heartbeat_at": time.time_ns()}
        if snapshot is not None:
            values["snapshot"] = orjson.dumps(snapshot, default=str).decode()
        c = engine_status.c
        with self.engine.begin() as conn:
            done = conn.execute(
                update(engine_status).where(c.engine_id == self.engine_id, c.pid == self.pid).values(**values)
            )
        if done.rowcount != 1:
            raise EngineAlreadyRunning(f"engine {self.engine_id!r}: the lease was taken by another process")
