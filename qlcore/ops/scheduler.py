"""`qlcore scheduler`: APScheduler 3.x runs the approved notebook jobs of ``schedules/*.toml``.

The job store is an APScheduler `SQLAlchemyJobStore` table (``apscheduler_jobs``) in the project
store, but it is derived data: at start every active schedule record is (re)added under its job
id with ``replace_existing=True`` and every job without an active record is removed, so dropping
the table loses nothing. A record that does not match its job's signed approval in the store (a
hand-written or edited file) is not scheduled: it is reported invalid and audited. While running,
the records are re-read every `resync_s` (new approvals, revocations, pauses). Each job calls one importable function, `run_job` (stored as the text
``qlcore.ops.scheduler:run_job``), with the job id; the run itself is `qlcore.ops.runs.execute_run`.

One scheduler per store: a lease row with a heartbeat (`qlcore.ops.lease`).
"""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any

from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from qlcore.control.keys import SCHEDULER_SERVICE, issue_service_key
from qlcore.control.users import USERS_FILE, UserStore
from qlcore.ops.auditing import audit
from qlcore.ops.controls import paused_jobs
from qlcore.ops.lease import Lease
from qlcore.ops.runs import JobRun, RunRefused, execute_run, settle_runs
from qlcore.ops.schedules import (
    GateRefused,
    ScheduleRecord,
    read_schedule,
    validate_cron,
    verify_record,
)
from qlcore.ops.submissions import DEFAULT_SCHEDULES_DIR
from qlcore.store.db import connect, project_data_dir, resolve_url

log = logging.getLogger(__name__)

JOB_REF = "qlcore.ops.scheduler:run_job"
_INTERNAL = "internal"  # a memory job store for the scheduler's own housekeeping jobs


def run_job(job_id: str, *, schedules_dir: str | None = None, data_dir: str | None = None,
            db: str | None = None) -> JobRun | None:
    """The target of every scheduled job: gate, run and record one firing of `job_id`.

    `db` is None when the store URL carries a password: the run then reads ``QLCORE_DB_URL``,
    so no secret is written into the job store. A paused job (or one without a record) returns None.
    """
    try:
        return execute_run(job_id, schedules_dir=Path(schedules_dir) if schedules_dir else DEFAULT_SCHEDULES_DIR,
                           db=db, data_dir=Path(data_dir) if data_dir else None)
    except RunRefused as exc:  # already audited; the scheduler keeps going
        log.warning("%s", exc)
        return None


# --- triggers ---------------------------------------------------------------------------------------
class TradingDaysCronTrigger(BaseTrigger):
    """A crontab trigger in `timezone` that fires only on sessions of the exchange `calendar`.

    Only the cron text, the zone and the calendar name are pickled into the job store; the
    session list comes from `qlcore.risk.calendar` (exchange_calendars) on first use.
    """

    _MAX_SKIPS = 500  # days: a cron that finds no session in this many never fires

    def __init__(self, cron: str, timezone: str, calendar: str = "XNYS") -> None:
        self.cron, self.timezone, self.calendar = validate_cron(cron, timezone), timezone, calendar
        self._setup()

    def _setup(self) -> None:
        from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

        self._trigger = CronTrigger.from_crontab(self.cron, timezone=self.timezone)

    def __getstate__(self) -> dict[str, Any]:
        return {"cron": self.cron, "timezone": self.timezone, "calendar": self.calendar}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.cron, self.timezone, self.calendar = state["cron"], state["timezone"], state["calendar"]
        self._setup()

    def is_session(self, day: date) -> bool:
        from qlcore.risk.calendar import SessionCalendar

        return (day - date(1970, 1, 1)).days in SessionCalendar(self.calendar, mode="date").days

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        candidate = self._trigger.get_next_fire_time(previous_fire_time, now)
        for _ in range(self._MAX_SKIPS):
            if candidate is None or self.is_session(candidate.date()):
                return candidate
            # not a session: the cron's first time on the next day (a whole day at a time, not firing by firing)
            next_day = datetime.combine(candidate.date() + timedelta(days=1), dt_time(0), tzinfo=candidate.tzinfo)
            candidate = self._trigger.get_next_fire_time(None, next_day)
        return None

    def __str__(self) -> str:
        return f"cron[{self.cron}] {self.timezone}, {self.calendar} sessions only"

    def __repr__(self) -> str:
        return f"TradingDaysCronTrigger({self.cron!r}, {self.timezone!r}, {self.calendar!r})"


def cron_trigger(record: ScheduleRecord, calendar: str = "XNYS") -> Any:
    """The trigger a record asks for: its cron in its time zone, on trading days only when it says so."""
    if record.trading_days_only:
        return TradingDaysCronTrigger(record.cron, record.timezone, calendar)
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(record.cron, timezone=record.timezone)


# --- the scheduler ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Where jobs come from and go, and the scheduler's timing. Unknown keys are a TypeError."""

    db: str | None = None
    schedules_dir: Path = DEFAULT_SCHEDULES_DIR
    data_dir: Path | None = None
    table: str = "apscheduler_jobs"
    misfire_grace_s: int = 300  # a run due while the scheduler was down still starts within this
    coalesce: bool = True  # several missed firings of one job run once, not back to back
    workers: int = 4  # runs at the same time (each waits on its own child process)
    heartbeat_s: float = 5.0
    stale_after_s: float = 30.0
    resync_s: float = 30.0
    calendar: str = "XNYS"
    run_at_start: tuple[str, ...] = ()  # jobs fired once as soon as the scheduler has loaded them (the demo)


@dataclass(slots=True)
class SyncReport:
    """What one reading of ``schedules/`` changed in the job store."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)


class JobScheduler:
    """A `BlockingScheduler` over the store's job table, fed from the schedule records.

    `run()` blocks until `stop()` (or SIGINT / SIGTERM when run on the main thread). `trigger_for`
    maps a record to its APScheduler trigger (default: `cron_trigger`).
    """

    def __init__(self, config: SchedulerConfig | None = None, *,
                 trigger_for: Callable[[ScheduleRecord], Any] | None = None) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
        from apscheduler.jobstores.memory import MemoryJobStore  # type: ignore[import-untyped]
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # type: ignore[import-untyped]
        from apscheduler.schedulers.blocking import BlockingScheduler  # type: ignore[import-untyped]

        self.config = config or SchedulerConfig()
        self.url = resolve_url(self.config.db)
        if make_url(self.url).password and resolve_url(None) != self.url:
            raise ValueError("a store URL with a password must come from QLCORE_DB_URL, not an argument: "
                             "the scheduler would write it into every stored job")
        self.engine = connect(self.url)
        self.users_file = (self.config.data_dir or project_data_dir()) / USERS_FILE
        self.trigger_for = trigger_for or (lambda record: cron_trigger(record, self.config.calendar))
        self.lease = Lease(self.engine, stale_after_s=self.config.stale_after_s)
        self.ready = threading.Event()  # set once the first sync is done (or failed: see start_error)
        self.start_error: Exception | None = None
        self.misfires: list[tuple[str, datetime]] = []  # (job id, when it was due): firings later than the grace
        self.fired: list[tuple[str, datetime, float]] = []  # (job id, when it was due, seconds late)
        self._versions: dict[str, int] = {}
        self._in_flight = 0
        self._idle = threading.Condition()
        self._stop_requested = threading.Event()
        self._scheduler = BlockingScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename=self.config.table),
                       _INTERNAL: MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(self.config.workers)},
            job_defaults={"misfire_grace_time": self.config.misfire_grace_s, "coalesce": self.config.coalesce,
                          "max_instances": 1},
            timezone=UTC,
        )
        self._listen()

    # --- lifecycle ------------------------------------------------------------------------------
    def run(self) -> None:
        """Take the lease and schedule until stopped; running runs are finished before returning."""
        restore = self._install_signals()  # before the lease: a signal from then on stops us cleanly
        try:
            self.lease.acquire()
        except BaseException:
            restore()
            raise
        # the key that grants each run its credential for the engine: made and registered on first use
        users = UserStore((self.config.data_dir or project_data_dir()) / USERS_FILE,
                          on_change=lambda action, name, details: audit(self.engine, "scheduler", action, f"user/{name}",
                                                                         details))
        issue_service_key(users, SCHEDULER_SERVICE, issues_grants=True)
        in_progress = self.settle()  # runs a killed scheduler or a run-now left running that still live
        audit(self.engine, "scheduler", "scheduler.started", "scheduler",
              {"pid": self.lease.pid, "host": self.lease.host, "schedules": str(self.config.schedules_dir),
               "runs_in_progress": in_progress})
        try:
            self._scheduler.start()
            if self.start_error is not None:
                raise self.start_error
        finally:
            restore()
            self.wait_idle()
            self.lease.release()
            audit(self.engine, "scheduler", "scheduler.stopped", "scheduler", {"pid": self.lease.pid})

    def stop(self, wait: bool = False) -> None:
        """Stop firing; `run()` returns once the runs in progress end (each is bounded by its timeout)."""
        from apscheduler.schedulers import SchedulerNotRunningError  # type: ignore[import-untyped]

        self._stop_requested.set()  # if the scheduler is not running yet, it stops as soon as it starts
        try:
            self._scheduler.shutdown(wait=wait)
        except SchedulerNotRunningError:
            pass

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, _frame: Any) -> None:
            log.warning("signal %s: stopping the scheduler", signum)
            self.stop()

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, previous in old.items():
                signal.signal(sig, previous)

        return restore

    # --- jobs -----------------------------------------------------------------------------------
    def sync(self, *, replace_all: bool = False) -> SyncReport:
        """Make the job store match the active records in ``schedules/`` (and the paused switches)."""
        report = SyncReport()
        if self._stop_requested.is_set():  # a stop (e.g. SIGTERM) came first: leave the store as it is
            return report
        active: dict[str, ScheduleRecord] = {}
        for file in sorted(Path(self.config.schedules_dir).glob("*.toml")):
            try:
                record = read_schedule(file)
                if record.job_id != file.stem:
                    raise ValueError(f"job_id {record.job_id!r} does not match the file name")
            except Exception as exc:  # one bad file must not stop the other jobs
                report.invalid[file.name] = str(exc)
                continue
            if record.status != "active":
                continue
            try:
                verify_record(record, db=self.engine, users_file=self.users_file)
            except GateRefused as exc:  # a record no signed approval covers is never scheduled
                report.invalid[file.name] = str(exc)
                continue
            active[record.job_id] = record
        stored = {job.id: job for job in self._scheduler.get_jobs(jobstore="default")}
        for job_id in sorted(set(stored) - set(active)):
            self._scheduler.remove_job(job_id, jobstore="default")
            self._versions.pop(job_id, None)
            report.removed.append(job_id)
        for job_id, record in active.items():
            if self._stop_requested.is_set():
                break
            if replace_all or job_id not in stored or self._versions.get(job_id) != record.version:
                try:
                    self._add(record)
                except ValueError as exc:  # a hand-edited record with a cron APScheduler cannot read
                    report.invalid[f"{job_id}.toml"] = str(exc)
                    if job_id in stored:
                        self._scheduler.remove_job(job_id, jobstore="default")
                        report.removed.append(job_id)
                    continue
                (report.replaced if job_id in stored else report.added).append(job_id)
        paused = paused_jobs(db=self.engine)
        for job in self._scheduler.get_jobs(jobstore="default"):
            if not hasattr(job, "next_run_time"):
                # Only a job added after a stop (SIGTERM during this sync) has none: APScheduler keeps it
                # pending and never stores it; its paused switch is read again at the next start.
                continue
            if job.id in paused and job.next_run_time is not None:
                job.pause()
            elif job.id not in paused and job.next_run_time is None:
                job.resume()
            if job.id in paused:
                report.paused.append(job.id)
        if report.added or report.replaced or report.removed or report.invalid:
            audit(self.engine, "scheduler", "scheduler.synced", "scheduler",
                  {"added": report.added, "replaced": report.replaced, "removed": report.removed,
                   "paused": report.paused, "invalid": report.invalid})
        return report

    def _add(self, record: ScheduleRecord) -> None:
        kwargs = {
            "schedules_dir": str(Path(self.config.schedules_dir).resolve()),
            "data_dir": str(self.config.data_dir or project_data_dir()),
            "db": None if make_url(self.url).password else self.url,
        }
        self._scheduler.add_job(
            JOB_REF, trigger=self.trigger_for(record), args=[record.job_id], kwargs=kwargs, id=record.job_id,
            name=f"{record.job_id} v{record.version}", jobstore="default", replace_existing=True,
            misfire_grace_time=self.config.misfire_grace_s, coalesce=self.config.coalesce, max_instances=1,
        )
        self._versions[record.job_id] = record.version

    def settle(self) -> list[str]:
        """Store the truth about runs left ``running`` (by a scheduler killed before us, or a run-now that
        died); the ids of those still in progress, which their jobs wait for (`qlcore.ops.runs.settle_runs`)."""
        return [run.run_id for run in settle_runs(db=self.engine)]

    def jobs(self) -> list[Any]:
        """The scheduled jobs (APScheduler `Job`s: id, name, trigger, next_run_time)."""
        return list(self._scheduler.get_jobs(jobstore="default"))

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until no run is in progress; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight <= 0, timeout_s)

    def fire_now(self, job_id: str) -> None:
        """Make `job_id` due now: the run goes through the scheduler like a scheduled one."""
        self._scheduler.modify_job(job_id, jobstore="default", next_run_time=datetime.now(UTC))

    # --- events ---------------------------------------------------------------------------------
    def _listen(self) -> None:
        from apscheduler import events as ev  # type: ignore[import-untyped]

        def started(_event: Any) -> None:
            try:
                report = self.sync(replace_all=True)
                for name, reason in report.invalid.items():
                    log.error("schedule record %s skipped: %s", name, reason)
                self._scheduler.add_job(self._heartbeat, "interval", seconds=self.config.heartbeat_s,
                                        id="heartbeat", jobstore=_INTERNAL, replace_existing=True)
                self._scheduler.add_job(self.sync, "interval", seconds=self.config.resync_s, id="resync",
                                        jobstore=_INTERNAL, replace_existing=True)
                self._scheduler.add_job(self.settle, "interval", seconds=self.config.resync_s, id="settle",
                                        jobstore=_INTERNAL, replace_existing=True)
                loaded = {job.id for job in self.jobs()}
                for job_id in self.config.run_at_start:
                    if job_id in loaded:
                        self.fire_now(job_id)
            except Exception as exc:  # a scheduler that cannot load its jobs must not sit there looking alive
                self.start_error = exc
                log.exception("the scheduler could not load its jobs: stopping")
                self.stop()
            finally:
                self.ready.set()
                if self._stop_requested.is_set():  # asked to stop before the scheduler was running
                    self.stop()

        def counted(event: Any) -> None:
            if event.jobstore != "default":
                return
            if event.code == ev.EVENT_JOB_SUBMITTED:
                due = max(event.scheduled_run_times)
                self.fired.append((event.job_id, due, (datetime.now(UTC) - due).total_seconds()))
            with self._idle:
                self._in_flight += 1 if event.code == ev.EVENT_JOB_SUBMITTED else -1
                self._idle.notify_all()

        def missed(event: Any) -> None:
            if event.jobstore != "default":
                return
            self.misfires.append((event.job_id, event.scheduled_run_time))
            audit(self.engine, "scheduler", "job.misfired", f"job/{event.job_id}",
                  {"scheduled_for": event.scheduled_run_time.isoformat(),
                   "misfire_grace_s": self.config.misfire_grace_s})

        def overlapped(event: Any) -> None:
            if event.jobstore == "default":
                audit(self.engine, "scheduler", "job.skipped_overlap", f"job/{event.job_id}",
                      {"scheduled_for": [t.isoformat() for t in event.scheduled_run_times]})

        self._scheduler.add_listener(started, ev.EVENT_SCHEDULER_STARTED)
        self._scheduler.add_listener(counted, ev.EVENT_JOB_SUBMITTED | ev.EVENT_JOB_EXECUTED | ev.EVENT_JOB_ERROR)
        self._scheduler.add_listener(missed, ev.EVENT_JOB_MISSED)
        self._scheduler.add_listener(overlapped, ev.EVENT_JOB_MAX_INSTANCES)

    def _heartbeat(self) -> None:
        if not self.lease.heartbeat():
            audit(self.engine, "scheduler", "scheduler.lease_lost", "scheduler", {"pid": self.lease.pid})
            log.error("the scheduler lease was taken over: stopping")
            self.stop()
