"""A scheduler killed with SIGKILL in the middle of a run: the run dies with it, its successor
stores the truth about it, and no job runs twice beside itself.

Real processes throughout: `qlcore scheduler` and `qlcore jobs run-now` as child processes of the
test, their runners (`qlcore.ops.runner`) and Jupyter kernels below them, one SQLite store file.
The job's notebook writes its kernel's pid into a file, then sleeps: the run is "in progress"
for as long as the test needs. Every wait is on a condition, with a generous bound.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook
from signed_jobs import approved_job
from sqlalchemy import select

from qlcore.audit.log import AuditLog
from qlcore.ops.lease import Lease
from qlcore.ops.runs import list_runs
from qlcore.store.db import connect
from qlcore.store.liveness import pid_alive
from qlcore.store.tables import job_run_processes

JOB = "slow"
SLEEPING_CELL = 1  # index of the cell that sleeps, in the submitted notebook


def slow_job(root: Path) -> Path:
    """A job whose notebook records its kernel's pid (one line per run) and then sleeps."""
    params = new_code_cell("marker = ''\n")
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell("import os, time\nwith open(marker, 'a') as fh:\n    fh.write(f'{os.getpid()}\\n')\n"
                         "time.sleep(900)\n")
    nb = root / "slow.ipynb"
    nbformat.write(new_notebook(cells=[params, body]), nb)
    marker = root / "kernels.txt"
    approved_job(root, nb, JOB, cron="0 3 1 1 *", trading_days_only=False, timeout_s=1800,
                 params={"marker": str(marker)})
    return marker


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout_s} s: {what}")


class Processes:
    """The `qlcore` processes a test starts; whatever is left is killed at the end."""

    def __init__(self, root: Path) -> None:
        self.root, self.url, self.started = root, f"sqlite:///{root / 'q.db'}", []

    def qlcore(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "qlcore.cli", *args, "--db", self.url, "--schedules-dir",
                                 str(self.root / "schedules"), "--data-dir", str(self.root)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started.append(proc)
        return proc

    def scheduler(self, *args: str) -> subprocess.Popen[bytes]:
        proc = self.qlcore("scheduler", *args)
        lease = Lease(connect(self.url))
        wait_until(lambda: (h := lease.holder()) is not None and h.pid == proc.pid, "the scheduler holds the lease")
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def runner_pid(url: str, run_id: str) -> int:
    with connect(url).connect() as conn:
        return conn.execute(select(job_run_processes.c.pid).where(job_run_processes.c.run_id == run_id)).scalar_one()


def kernels(marker: Path) -> list[int]:
    return [int(line) for line in marker.read_text().split()] if marker.is_file() else []


def a_run_in_progress(url: str, marker: Path) -> tuple[str, int, int]:
    """(run id, runner pid, kernel pid) of the one run of the job, once its notebook sleeps."""
    wait_until(lambda: kernels(marker), "the job's notebook is running")
    (run,) = list_runs(JOB, db=url)
    assert run.status == "running"
    return run.run_id, runner_pid(url, run.run_id), kernels(marker)[0]


def test_a_scheduler_killed_mid_run_takes_its_run_with_it_and_its_successor_records_the_truth(tmp_path):
    marker = slow_job(tmp_path)
    procs = Processes(tmp_path)
    try:
        first = procs.scheduler("--run-at-start", JOB)
        run_id, runner, kernel = a_run_in_progress(procs.url, marker)

        first.send_signal(signal.SIGKILL)
        first.wait()
        wait_until(lambda: not pid_alive(runner) and not pid_alive(kernel), "the run's runner and kernel end")

        second = procs.scheduler()  # without --run-at-start: nothing fires the job again
        wait_until(lambda: list_runs(JOB, db=procs.url)[0].status != "running", "the successor settles the run")
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    finally:
        procs.close()

    (run,) = list_runs(JOB, db=procs.url)  # one run, never a second one
    assert run.run_id == run_id and run.status == "failed"
    assert run.error == f"stopped by SIGTERM: the process that started it (pid {first.pid}) ended or stopped it"
    assert run.failing_cell == SLEEPING_CELL and run.finished_at is not None
    assert run.output_path and Path(run.output_path).is_file()  # the output notebook is archived
    assert kernels(marker) == [kernel]  # the notebook ran once
    with connect(procs.url).connect() as conn:
        assert conn.execute(select(job_run_processes)).first() is None
    actions = [e.action for e in AuditLog(procs.url).entries(subject=f"job/{JOB}")]
    assert actions == ["job.run_started", "job.run_failed"]


def test_a_scheduler_started_while_a_run_lives_does_not_fire_that_job_beside_it(tmp_path):
    marker = slow_job(tmp_path)
    procs = Processes(tmp_path)
    try:
        cli = procs.qlcore("jobs", "run-now", JOB)  # a run started by hand, alive when the scheduler starts
        run_id, runner, kernel = a_run_in_progress(procs.url, marker)

        sched = procs.scheduler("--run-at-start", JOB)
        audit = AuditLog(procs.url)
        skipped = wait_until(lambda: [e for e in audit.entries(subject=f"job/{JOB}") if e.action == "job.run_skipped"],
                             "the scheduler's firing is skipped")
        assert json.loads(skipped[0].details) == {"reason": "in progress", "run_id": run_id}
        (started,) = [e for e in audit.entries(subject="scheduler") if e.action == "scheduler.started"]
        assert json.loads(started.details)["runs_in_progress"] == [run_id]  # seen as live at start
        assert pid_alive(runner) and len(list_runs(JOB, db=procs.url)) == 1

        cli.send_signal(signal.SIGKILL)  # the run's starter dies: the run goes with it
        cli.wait()
        wait_until(lambda: not pid_alive(runner) and not pid_alive(kernel), "the run's runner and kernel end")
        sched.send_signal(signal.SIGTERM)
        assert sched.wait(60) == 0
        again = procs.scheduler()  # a restart settles what it finds
        wait_until(lambda: list_runs(JOB, db=procs.url)[0].status != "running", "the restart settles the run")
        again.send_signal(signal.SIGTERM)
        assert again.wait(60) == 0
    finally:
        procs.close()

    (run,) = list_runs(JOB, db=procs.url)
    assert (run.run_id, run.trigger, run.status) == (run_id, "manual", "failed")
    assert run.error == f"stopped by SIGTERM: the process that started it (pid {cli.pid}) ended or stopped it"
    assert kernels(marker) == [kernel]

