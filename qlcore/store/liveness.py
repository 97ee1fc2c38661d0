"""Is the process behind a lease row still there? Shared by the engine's and the scheduler's leases.

A holder is alive while its heartbeat is younger than the staleness bound, unless it ran on this
host and its process is gone (a crashed holder is taken over at once, which is what a restart after
SIGKILL needs). A zombie (killed, not yet reaped by its parent) counts as gone.
"""
from __future__ import annotations

import os
import socket
import time

NS = 1_000_000_000
HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True if process `pid` on this host runs (someone else's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def holder_alive(host: str, pid: int, heartbeat_at: int, stale_after_s: float, now_ns: int | None = None) -> bool:
    """Whether a holder that beat at `heartbeat_at` (wall ns) from `pid` on `host` still holds its lease."""
    age_s = ((now_ns if now_ns is not None else time.time_ns()) - heartbeat_at) / NS
    if age_s >= stale_after_s:
        return False
    return host != HOST or pid_alive(pid)


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot, /proc/PID/stat field 22); None if unknown.

    With the pid it names one process: a pid reused by a later process has another start time."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def same_process_alive(pid: int, started: int | None) -> bool:
    """True if the process that was `pid` when it had start time `started` still runs (on this host)."""
    if not pid_alive(pid):
        return False
    return started is None or process_start(pid) in (started, None)

