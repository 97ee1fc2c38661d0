"""`qlcore serve --num-procs N`: the forked server processes end with the one that forked them,
even when a supervisor signals that one alone (as `kill PID` or systemd's main pid does)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

QLCORE = Path(sys.executable).with_name("qlcore")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers follow their parent on Linux")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(") ", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except OSError:
        return False
    return state != "Z"


def _wait(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.2)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_server_processes_stop_when_only_the_parent_is_signalled(tmp_path):
    port = _free_port()
    env = {**os.environ, "QLCORE_DATA_DIR": str(tmp_path)}
    env.pop("QLCORE_DB_URL", None)
    log = (tmp_path / "serve.log").open("w")
    parent = subprocess.Popen([str(QLCORE), "serve", "--port", str(port), "--num-procs", "2", "--no-browser"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        _wait(lambda: _answers(f"http://127.0.0.1:{port}/login"), "the server answered")
        _wait(lambda: len(_children(parent.pid)) == 2, "two server processes were forked")
        workers = _children(parent.pid)
        parent.send_signal(signal.SIGTERM)  # the parent alone, not its process group
        parent.wait(30)
        _wait(lambda: not any(_alive(w) for w in workers), "every server process ended")
        assert not _answers(f"http://127.0.0.1:{port}/login")
    finally:
        for pid in workers | _children(parent.pid):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        log.close()
