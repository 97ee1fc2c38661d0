"""The scheduler: jobs from schedules/, runs through APScheduler, one scheduler per store.

End to end: the template job notebook is submitted, approved, fired by a running scheduler, its
decision lands in the command table with the job id and approved hash, and a paper engine deploys it. The rest: rebuild
from schedules/ after the job table is dropped, a second scheduler refused, a stale lease taken
over, trading days only, pause kept across a restart, SIGTERM, and the `qlcore jobs` commands.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import nbformat
import pandas as pd
import pytest
import typer
from nbformat.v4 import new_code_cell, new_notebook
from signed_jobs import approved_job, keys
from sqlalchemy import insert, inspect, text
from typer.testing import CliRunner

from qlcore.audit.log import AuditLog
from qlcore.cli import UserError
from qlcore.control.commands import CommandQueue
from qlcore.data.sample import load_sample
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.ops.cli import register
from qlcore.ops.controls import set_paused
from qlcore.ops.demo import DEMO_JOB, ensure_demo_job
from qlcore.ops.lease import Lease, SchedulerAlreadyRunning
from qlcore.ops.notebooks import NoParametersCellError, ParameterError
from qlcore.ops.runner import OUTCOME
from qlcore.ops.runs import job_alerts, list_runs, settle_runs
from qlcore.ops.scheduler import JOB_REF, JobScheduler, SchedulerConfig, TradingDaysCronTrigger
from qlcore.ops.schedules import InvalidCronError, ScheduleRecord, read_schedule, write_schedule
from qlcore.ops.submissions import approve, list_submissions, submit
from qlcore.research.notebook import read_records
from qlcore.store.db import connect
from qlcore.store.liveness import HOST, process_start
from qlcore.store.tables import job_run_processes, job_runs, scheduler_lease

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "notebooks" / "jobs" / "daily_rebalance.ipynb"


def trivial_notebook(path: Path, body: str = "x + 1\n") -> Path:
    cell = new_code_cell("x = 1\n")
    cell.metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=[cell, new_code_cell(body)]), path)
    return path


def make_job(root: Path, nb: Path, job_id: str, url: str | None = None, **fields) -> ScheduleRecord:
    """`nb` approved for real (signed, copied) as `job_id`, skipping only the submission's run."""
    return approved_job(root, nb, job_id, db=url, **{"cron": "35 15 * * mon-fri", **fields})


def config(root: Path, url: str | None = None, **kw) -> SchedulerConfig:
    url = url or f"sqlite:///{root / 'q.db'}"
    return SchedulerConfig(db=url, schedules_dir=root / "schedules", data_dir=root, **kw)


class Running:
    """A scheduler running in a thread for the length of a `with` block."""

    def __init__(self, cfg: SchedulerConfig) -> None:
        self.sched = JobScheduler(cfg)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.sched.run()
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            self.error = exc
            self.sched.ready.set()

    def __enter__(self) -> JobScheduler:
        self.thread.start()
        assert self.sched.ready.wait(30), "the scheduler did not start"
        if self.error:
            raise self.error
        return self.sched

    def __exit__(self, *exc) -> None:
        self.sched.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


def wait_for_runs(url: str, job_id: str, n: int, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = list_runs(job_id, db=url)
        if len(runs) >= n and all(r.status != "running" for r in runs):
            return runs
        time.sleep(0.1)
    raise AssertionError(f"{job_id}: {n} finished run(s) not seen in {timeout_s} s: {list_runs(job_id, db=url)}")


# --- end to end -------------------------------------------------------------------------------------
def test_template_notebook_submitted_approved_and_fired_queues_its_decision_for_the_engine(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    alice, bob = keys(tmp_path)
    sub = submit(TEMPLATE, {"top_n": "2"}, alice, db=url, data_dir=tmp_path)
    assert sub.status == "succeeded" and sub.results["nbval"]["passed"] is True
    assert CommandQueue(url).history() == []  # research mode at review: nothing sent
    record = approve(sub.id, bob, "35 15 * * mon-fri", "paper", job_id="rebalance", db=url,
                     schedules_dir=tmp_path / "schedules", data_dir=tmp_path)
    nb = tmp_path / "broken.ipynb"
    make_job(tmp_path, trivial_notebook(nb, "raise ValueError('no data today')\n"), "broken")

    with Running(config(tmp_path)) as sched:
        assert {j.id for j in sched.jobs()} == {"rebalance", "broken"}
        sched.fire_now("broken")
        (failed,) = wait_for_runs(url, "broken", 1)
        sched.fire_now("rebalance")  # the scheduler keeps going after a failed job
        (done,) = wait_for_runs(url, "rebalance", 1)
        job = next(j for j in sched.jobs() if j.id == "rebalance")
        assert job.next_run_time > datetime.now(UTC)  # back on its cron after the fire-now
        assert job.func_ref == JOB_REF and job.args == ("rebalance",) and job.max_instances == 1

    assert failed.status == "failed" and failed.error == "cell 1: ValueError: no data today"
    assert [a.job_id for a in job_alerts(db=url)] == ["broken"]
    assert done.status == "succeeded" and done.trigger == "schedule"
    out = Path(done.output_path)
    assert out.parent == tmp_path / "runs" / "rebalance" and not os.stat(out).st_mode & stat.S_IWUSR

    closes = pd.DataFrame({s: load_sample(s)["close"] for s in ["AAPL", "GOOG", "IBM", "MSFT"]}).dropna()
    momentum = (closes.iloc[-1] / closes.iloc[-64] - 1.0).sort_values(ascending=False)
    expected = [s for s in momentum.index[:2] if momentum[s] > 0]
    decision = read_records(out)["decision"]
    assert decision["symbols"] == expected and decision["as_of"] == str(closes.index[-1].date())

    (command,) = CommandQueue(url).history()
    assert (command.kind, command.user, command.status) == ("strategy.deploy", "job:rebalance", "pending")
    assert command.payload["job_id"] == "rebalance" and command.payload["code_hash"] == record.approved_hash
    assert command.payload["symbols"] == expected and command.payload["capital"] == Decimal("100000")
    assert read_records(out)["commands"] == [command.id]

    # the paper engine takes the job's command and deploys the strategy it names, under the signed
    # approval it verifies with the users file of its data folder
    monkeypatch.setenv("QLCORE_DATA_DIR", str(tmp_path))
    engine = EngineService(EngineConfig(url=url, venue_path=tmp_path / "venue.sqlite", speed=1000.0,
                                        command_poll_s=0.0, users_file=tmp_path / "users.toml"))
    engine.start()
    try:
        for _ in range(3):
            engine.step()
        acted = CommandQueue(url).status(command.id)
        assert acted.status == "accepted", acted.reason
        assert acted.reason == f"deployed daily_rebalance (rebalance) on {', '.join(expected)}"
        assert "daily_rebalance" in engine.manager.strategy_ids
    finally:
        engine.shutdown()


def test_the_demo_job_is_approved_once_and_runs_as_soon_as_the_scheduler_starts(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    first = ensure_demo_job(db=url, data_dir=tmp_path)
    assert (first.job_id, first.author, first.reviewer, first.mode, first.trading_days_only, first.cron) == (
        DEMO_JOB, "demo-quant", "demo-reviewer", "paper", False, "0 * * * *")
    folder = tmp_path / "demo" / "schedules"
    assert read_schedule(folder / f"{DEMO_JOB}.toml") == first
    assert ensure_demo_job(db=url, data_dir=tmp_path) == first and len(list_submissions(db=url)) == 1
    cfg = SchedulerConfig(db=url, schedules_dir=folder, data_dir=tmp_path, run_at_start=(DEMO_JOB,))
    with Running(cfg):
        (run,) = wait_for_runs(url, DEMO_JOB, 1)
    assert run.status == "succeeded" and run.code_hash == first.approved_hash
    (command,) = CommandQueue(url).history()
    assert command.payload["job_id"] == DEMO_JOB and command.payload["code_hash"] == first.approved_hash


def test_bad_input_is_refused_at_submit_or_approve_time_before_anything_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    alice, _ = keys(tmp_path)
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) top_k .*valid parameters: symbols"):
        submit(TEMPLATE, {"top_k": "3"}, alice, db=url, data_dir=tmp_path)
    with pytest.raises(ParameterError, match="'lookback': 'long' is not an integer"):
        submit(TEMPLATE, {"lookback": "long"}, alice, db=url, data_dir=tmp_path)
    bare = tmp_path / "bare.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), bare)
    with pytest.raises(NoParametersCellError, match="no code cell tagged 'parameters'"):
        submit(bare, {}, alice, db=url, data_dir=tmp_path)
    assert list_submissions(db=url) == []  # nothing ran, nothing was stored


def test_a_hand_edited_record_is_skipped_and_reported_and_the_others_still_load(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    nb = trivial_notebook(tmp_path / "n.ipynb")
    make_job(tmp_path, nb, "good")
    make_job(tmp_path, nb, "bad")
    file = tmp_path / "schedules" / "bad.toml"
    file.write_text(file.read_text().replace('cron = "35 15 * * mon-fri"', 'cron = "* * * * *"'))
    (tmp_path / "schedules" / "junk.toml").write_text("job_id = 'junk'\ncolour = 'red'\n")
    with Running(config(tmp_path)) as sched:
        assert [j.id for j in sched.jobs()] == ["good"]
    (synced,) = [e.data for e in AuditLog(url).entries(subject="scheduler") if e.action == "scheduler.synced"]
    assert "does not match its signed approval" in synced["invalid"]["bad.toml"]
    assert "cron ('* * * * *' in the file, '35 15 * * mon-fri' approved)" in synced["invalid"]["bad.toml"]
    assert "unknown key(s) colour" in synced["invalid"]["junk.toml"]


# --- the job store is derived from schedules/ -----------------------------------------------------
def test_dropping_the_job_table_and_restarting_brings_the_same_jobs_back_from_schedules(tmp_path, store_url,
                                                                                        monkeypatch):
    url = store_url
    monkeypatch.setenv("QLCORE_DB_URL", url)  # a PostgreSQL URL may carry a password: it must come from here
    nb = trivial_notebook(tmp_path / "n.ipynb")
    make_job(tmp_path, nb, "close", url, cron="5 16 * * mon-fri")
    make_job(tmp_path, nb, "open", url, cron="25 9 * * mon-fri", trading_days_only=False)
    make_job(tmp_path, nb, "gone", url)
    revoke_file = tmp_path / "schedules" / "gone.toml"
    gone = read_schedule(revoke_file)
    write_schedule(tmp_path / "schedules", ScheduleRecord(**{**_fields(gone), "version": 2, "status": "revoked"}))

    def snapshot(sched: JobScheduler) -> dict[str, tuple[str, datetime, str]]:
        return {j.id: (str(j.trigger), j.next_run_time, j.name) for j in sched.jobs()}

    with Running(config(tmp_path, url)) as sched:
        first = snapshot(sched)
    assert set(first) == {"close", "open"}
    assert first["close"][0] == "cron[5 16 * * mon-fri] America/New_York, XNYS sessions only"
    assert first["close"][1].astimezone(ZoneInfo("America/New_York")).hour == 16

    engine = connect(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE apscheduler_jobs"))
    assert "apscheduler_jobs" not in inspect(engine).get_table_names()
    with Running(config(tmp_path, url)) as sched:
        assert snapshot(sched) == first
    synced = [e.data for e in AuditLog(url).entries(subject="scheduler") if e.action == "scheduler.synced"]
    assert synced[-1]["added"] == ["close", "open"]


def _fields(record: ScheduleRecord) -> dict:
    return {f: getattr(record, f) for f in ScheduleRecord.__dataclass_fields__}


def test_a_revoked_or_deleted_record_removes_its_job_at_the_next_sync(tmp_path):
    nb = trivial_notebook(tmp_path / "n.ipynb")
    make_job(tmp_path, nb, "a")
    make_job(tmp_path, nb, "b")
    with Running(config(tmp_path)) as sched:
        (tmp_path / "schedules" / "b.toml").unlink()
        approved_a = read_schedule(tmp_path / "schedules" / "a.toml")
        write_schedule(tmp_path / "schedules",
                       ScheduleRecord(**{**_fields(approved_a), "version": 2, "status": "revoked"}))
        make_job(tmp_path, nb, "c")
        report = sched.sync()
        assert (report.added, report.removed) == (["c"], ["a", "b"])
        assert [j.id for j in sched.jobs()] == ["c"]


# --- one scheduler per store ------------------------------------------------------------------------
def test_a_second_scheduler_on_the_same_store_refuses_to_start(tmp_path, store_url, monkeypatch):
    monkeypatch.setenv("QLCORE_DB_URL", store_url)
    with Running(config(tmp_path, store_url)) as first:
        second = JobScheduler(config(tmp_path, store_url))
        with pytest.raises(SchedulerAlreadyRunning, match=f"pid {os.getpid()} on .*last heartbeat"):
            second.run()
        assert first.lease.holder().owner == first.lease.owner
    assert Lease(connect(store_url)).holder() is None  # released at stop


def test_a_lease_left_by_a_dead_process_or_gone_stale_is_taken_over(tmp_path):
    engine = connect(f"sqlite:///{tmp_path / 'q.db'}")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    now = time.time_ns()
    with engine.begin() as conn:
        conn.execute(insert(scheduler_lease).values(name="scheduler", owner="old", pid=int(dead.stdout),
                                                    host=os.uname()[1], started_at=now, heartbeat_at=now))
    taker = Lease(engine)
    taker.acquire()
    assert taker.holder().owner == taker.owner and taker.heartbeat()

    other_host = Lease(engine, stale_after_s=0.2)
    other_host.host = "elsewhere"
    with pytest.raises(SchedulerAlreadyRunning):
        Lease(engine, stale_after_s=30).acquire()
    time.sleep(0.3)  # the holder stops beating: its lease goes stale
    other_host.acquire()
    assert not taker.heartbeat()  # the old holder learns it lost the lease


def test_runs_left_running_are_settled_at_the_next_start_from_their_process_and_outcome(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    finished = tmp_path / "finished"  # a runner that wrote its outcome before its scheduler died
    finished.mkdir()
    (finished / OUTCOME).write_text(json.dumps({"status": "succeeded", "error": None, "cell": None}))
    killed = tmp_path / "killed"  # a runner killed before it could write one
    killed.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # started by this process
    row = {"job_id": "job", "attempt": 1, "status": "running", "started_at": "2026-11-25T10:00:00.000+00:00",
           "approved_hash": "a", "code_hash": "a", "params": "{}"}
    procs = {"run-finished": (dead, dead, finished), "run-killed": (dead, dead, killed),
             "run-live": (live.pid, os.getpid(), tmp_path)}
    try:
        with connect(url).begin() as conn:
            for run_id in ("run-finished", "run-killed", "run-live", "run-unrecorded"):
                conn.execute(insert(job_runs).values(run_id=run_id, trigger="schedule", **row))
            for run_id, (pid, parent, workdir) in procs.items():
                conn.execute(insert(job_run_processes).values(
                    run_id=run_id, host=HOST, pid=pid, pid_start=process_start(pid), parent_pid=parent,
                    parent_start=process_start(parent), workdir=str(workdir)))
        with Running(config(tmp_path)):
            pass
        runs = {r.run_id: r for r in list_runs(db=url)}
        assert live.poll() is None  # a run whose starter lives is its starter's: left alone, still running
    finally:
        live.kill()
        live.wait()
    assert (runs["run-finished"].status, runs["run-finished"].error) == ("succeeded", None)
    assert runs["run-killed"].status == "failed"
    assert runs["run-killed"].error.startswith("the run's process ended without an outcome")
    assert runs["run-unrecorded"].status == "failed" and runs["run-unrecorded"].error.startswith("abandoned")
    assert runs["run-live"].status == "running"
    assert not finished.exists() and not killed.exists()  # a settled run's folder goes with its process row


def test_a_runner_that_outlived_its_starter_is_stopped_and_then_settled(tmp_path):
    """Where PR_SET_PDEATHSIG could not reach a runner (an OS other than Linux), the next look stops
    it; the look after records that it ended without an outcome."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        with connect(url).begin() as conn:
            conn.execute(insert(job_runs).values(
                run_id="run-orphan", job_id="job", attempt=1, trigger="schedule", status="running",
                started_at="2026-11-25T10:00:00.000+00:00", approved_hash="a", code_hash="a", params="{}"))
            conn.execute(insert(job_run_processes).values(
                run_id="run-orphan", host=HOST, pid=orphan.pid, pid_start=process_start(orphan.pid), parent_pid=dead,
                parent_start=None, workdir=str(tmp_path / "orphan")))
        assert [r.run_id for r in settle_runs(db=url)] == ["run-orphan"]  # still alive: in progress, signalled
        assert orphan.wait(60) == -signal.SIGTERM
        assert settle_runs(db=url) == []
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
    run = list_runs(db=url)[0]
    assert run.status == "failed" and run.error.startswith("the run's process ended without an outcome")


# --- triggers, pause -----------------------------------------------------------------------------------
def test_trading_days_only_skips_weekends_and_exchange_holidays_and_survives_pickling():
    trig = pickle.loads(pickle.dumps(TradingDaysCronTrigger("35 15 * * *", "America/New_York")))
    ny = ZoneInfo("America/New_York")
    start = datetime(2026, 11, 25, 16, 0, tzinfo=ny)  # Wednesday, after the 15:35 firing
    fires, prev = [], None
    now = start
    for _ in range(3):
        nxt = trig.get_next_fire_time(prev, now)
        fires.append(nxt)
        prev = now = nxt
    # Thursday 26 is Thanksgiving (NYSE closed), 28-29 a weekend
    assert [f.date() for f in fires] == [date(2026, 11, 27), date(2026, 11, 30), date(2026, 12, 1)]
    assert all((f.hour, f.minute, f.tzinfo) == (15, 35, ny) for f in fires)
    every_minute = TradingDaysCronTrigger("* * * * *", "America/New_York")
    friday_night = datetime(2026, 11, 27, 23, 59, 30, tzinfo=ny)
    assert every_minute.get_next_fire_time(None, friday_night) == datetime(2026, 11, 30, 0, 0, tzinfo=ny)
    with pytest.raises(InvalidCronError):
        TradingDaysCronTrigger("35 15 * *", "America/New_York")


def test_a_paused_job_stays_paused_across_a_restart_and_resumes(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    make_job(tmp_path, trivial_notebook(tmp_path / "n.ipynb"), "job")
    set_paused("job", True, "carol", "holiday desk", db=url)
    with Running(config(tmp_path)) as sched:
        assert [j.next_run_time for j in sched.jobs()] == [None]
        set_paused("job", False, "carol", db=url)
        sched.sync()
        assert sched.jobs()[0].next_run_time is not None



def test_a_stop_arriving_while_the_first_sync_loads_the_jobs_ends_the_run_cleanly(tmp_path):
    """SIGTERM can land while the scheduler loads its jobs: the jobs added after it stay pending in
    APScheduler (no next run time); the run must still end with no error and leave nothing held."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    nb = trivial_notebook(tmp_path / "n.ipynb")
    for job_id in ("a", "b", "c"):
        make_job(tmp_path, nb, job_id)
    set_paused("c", True, "carol", "holiday desk", db=url)
    from qlcore.ops.scheduler import cron_trigger

    seen: list[str] = []

    def stopping_trigger(record: ScheduleRecord):
        seen.append(record.job_id)
        if record.job_id == "b":
            sched.stop()  # what the SIGTERM handler does
        return cron_trigger(record, "XNYS")

    sched = JobScheduler(config(tmp_path), trigger_for=stopping_trigger)
    sched.run()
    assert seen == ["a", "b"] and sched.start_error is None and sched.ready.is_set()
    assert Lease(connect(url)).holder() is None
    assert [e.action for e in AuditLog(url).entries(subject="scheduler")][-1] == "scheduler.stopped"
    with Running(config(tmp_path)) as again:  # the next start loads every job, the paused one paused
        assert {j.id: j.next_run_time is None for j in again.jobs()} == {"a": False, "b": False, "c": True}


# --- the commands ----------------------------------------------------------------------------------
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


def test_jobs_commands_list_run_now_history_pause_and_resume(tmp_path):
    db = f"sqlite:///{tmp_path / 'q.db'}"
    make_job(tmp_path, trivial_notebook(tmp_path / "n.ipynb"), "nightly", trading_days_only=False, cron="0 2 * * *")
    common = ["--db", db, "--schedules-dir", str(tmp_path / "schedules")]
    cli = CliRunner()
    listed = cli.invoke(app(), ["jobs", "list", *common])
    assert listed.exit_code == 0 and "nightly" in listed.output and "active" in listed.output
    assert "never run" in listed.output and "next 20" in listed.output

    ran = cli.invoke(app(), ["jobs", "run-now", "nightly", *common, "--data-dir", str(tmp_path)])
    assert ran.exit_code == 0, ran.output
    (run,) = list_runs("nightly", db=db)
    assert run.trigger == "manual" and run.status == "succeeded" and f"run {run.run_id}: succeeded" in ran.output
    history = cli.invoke(app(), ["jobs", "history", "nightly", "--db", db])
    assert run.run_id in history.output and "succeeded" in history.output

    paused = cli.invoke(app(), ["jobs", "pause", "nightly", "--user", "carol", "--reason", "audit", *common])
    assert paused.exit_code == 0
    assert "paused" in cli.invoke(app(), ["jobs", "list", *common]).output
    again = cli.invoke(app(), ["jobs", "run-now", "nightly", *common])
    assert isinstance(again.exception, UserError) and "is paused" in str(again.exception)
    assert cli.invoke(app(), ["jobs", "resume", "nightly", "--user", "carol", *common]).exit_code == 0
    unknown = cli.invoke(app(), ["jobs", "pause", "nope", "--user", "carol", *common])
    assert isinstance(unknown.exception, UserError) and "no job 'nope'" in str(unknown.exception)


def test_scheduler_command_runs_in_the_foreground_and_stops_cleanly_on_sigterm(tmp_path):
    db = f"sqlite:///{tmp_path / 'q.db'}"
    make_job(tmp_path, trivial_notebook(tmp_path / "n.ipynb"), "job")
    proc = subprocess.Popen([sys.executable, "-m", "qlcore.cli", "scheduler", "--db", db, "--schedules-dir",
                             str(tmp_path / "schedules")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lease = Lease(connect(db))
    deadline = time.monotonic() + 30
    try:
        while lease.holder() is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert lease.holder() is not None and lease.holder().pid == proc.pid
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # never leave a scheduler behind a failed test
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "scheduler stopped" in out and lease.holder() is None
    actions = [e.action for e in AuditLog(db).entries(subject="scheduler")]
    assert actions[0] == "scheduler.started" and actions[-1] == "scheduler.stopped"
