"""One scheduler per store: a lease row with the holder's pid, host and heartbeat.

A second scheduler refuses to start while the holder is alive (`qlcore.store.liveness`: a fresh
heartbeat, and on this host a running process). A lease whose holder is gone is taken over with a
compare-and-set on the old heartbeat, so two starters cannot both win.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from qlcore.store.liveness import holder_alive
from qlcore.store.tables import scheduler_lease

NS = 1_000_000_000


class SchedulerAlreadyRunning(RuntimeError):
    """Another scheduler holds the store's lease and is alive."""


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    owner: str
    pid: int
    host: str
    started_at: int
    heartbeat_at: int


class Lease:
    """The scheduler lease named `name` in the store behind `engine`."""

    def __init__(self, engine: Engine, name: str = "scheduler", *, stale_after_s: float = 30.0) -> None:
        self.engine, self.name, self.stale_after_s = engine, name, stale_after_s
        self.owner = uuid.uuid4().hex
        self.host, self.pid = socket.gethostname(), os.getpid()

    def holder(self) -> LeaseHolder | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(scheduler_lease).where(scheduler_lease.c.name == self.name)).first()
        return None if row is None else LeaseHolder(row.owner, row.pid, row.host, row.started_at, row.heartbeat_at)

    def acquire(self) -> None:
        """Take the lease, or `SchedulerAlreadyRunning` naming the live holder."""
        now = time.time_ns()
        values = {"owner": self.owner, "pid": self.pid, "host": self.host, "started_at": now, "heartbeat_at": now}
        current = self.holder()
        if current is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(scheduler_lease).values(name=self.name, **values))
                return
            except IntegrityError:  # another scheduler inserted it first
                current = self.holder()
                if current is None:
                    raise
        age_s = (now - current.heartbeat_at) / NS
        if holder_alive(current.host, current.pid, current.heartbeat_at, self.stale_after_s, now):
            raise SchedulerAlreadyRunning(
                f"another scheduler is running on this store (pid {current.pid} on {current.host}, "
                f"last heartbeat {age_s:.1f} s ago); stop it first, or wait {self.stale_after_s:.0f} s "
                "after it died for its lease to go stale"
            )
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(scheduler_lease)
                .where(scheduler_lease.c.name == self.name, scheduler_lease.c.owner == current.owner,
                       scheduler_lease.c.heartbeat_at == current.heartbeat_at)
                .values(**values)
            ).rowcount
        if taken != 1:
            raise SchedulerAlreadyRunning("another scheduler took over the stale lease at the same moment")

    def heartbeat(self) -> bool:
        """Renew the lease; False when it is no longer ours (taken over after we stalled)."""
        with self.engine.begin() as conn:
            renewed = conn.execute(
                update(scheduler_lease)
                .where(scheduler_lease.c.name == self.name, scheduler_lease.c.owner == self.owner)
                .values(heartbeat_at=time.time_ns())
            ).rowcount
        return renewed == 1

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(scheduler_lease).where(scheduler_lease.c.name == self.name,
                                                       scheduler_lease.c.owner == self.owner))
