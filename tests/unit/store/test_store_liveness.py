"""When a lease holder counts as alive: the rule the engine's and the scheduler's leases share."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from qlcore.store.liveness import HOST, holder_alive, pid_alive

NOW = time.time_ns()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_fresh_heartbeat_from_a_running_process_is_alive():
    assert holder_alive(HOST, os.getpid(), NOW - 1_000_000_000, 5.0, NOW)


def test_a_stale_heartbeat_is_gone_even_if_the_process_runs():
    assert not holder_alive(HOST, os.getpid(), NOW - 6_000_000_000, 5.0, NOW)


def test_a_fresh_heartbeat_from_a_process_gone_on_this_host_is_gone():
    assert not pid_alive(_dead_pid())
    assert not holder_alive(HOST, _dead_pid(), NOW, 5.0, NOW)


def test_on_another_host_only_the_heartbeat_counts():
    assert holder_alive("elsewhere", _dead_pid(), NOW, 5.0, NOW)
    assert not holder_alive("elsewhere", os.getpid(), NOW - 5_000_000_000, 5.0, NOW)


def test_a_killed_process_not_yet_reaped_counts_as_gone():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.kill()
    time.sleep(0.3)  # killed; its parent (this test) has not waited for it: a zombie
    try:
        assert not pid_alive(proc.pid)
    finally:
        proc.wait()
