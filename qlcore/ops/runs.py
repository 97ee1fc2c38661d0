"""One scheduled run of an approved notebook: the gate, papermill in a child process, the run record.

`execute_run` reads top to bottom like papermill's ``execute_notebook``: read the job's record,
pass the gate (the record must match its signed approval, and the approved copy its hash; a
refusal is stored as a run and audited), write the ``running`` row, run the approved copy — from
the very bytes the gate checked, written into the run's own folder, never the working notebook — in
a child process that is killed at the job's timeout, keep the output notebook read-only under
``data/runs/<job>/``, then store the outcome. A failed or timed-out
attempt is retried as the record says. Refused, failed and timed-out runs are the job alerts.

A run's process dies with whoever started it (`qlcore.ops.runner`); `settle_runs` is how the next
scheduler stores the truth about runs a killed one left ``running``, and how a job is kept from
running beside a run of itself that still lives.

Secrets reach a job through the environment only: the child inherits it, parameters that look
like secrets are refused, and the process's secrets (`qlcore.store.scrub`), in their common
disguises, are blanked out of the output notebook and the run record should a notebook print or
raise them.

Each attempt gets its own credential for the engine (`_run_signer`): a new one-run key, in a 0600
file in the run's folder (gone with the folder, and blanked out of the outputs like the other
secrets), and the scheduler's signed grant for it, scoped to the job's strategy and symbols and its
approved hash, valid for the run's timeout and a margin. The kernel finds them through
``QLCORE_RUN_KEY_FILE`` and ``QLCORE_JOB_GRANT`` (`qlcore.control.keys.signer_from_env`).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert, select, update

from qlcore.control.identity import JobSigner
from qlcore.control.keys import (
    JOB_GRANT_ENV,
    RUN_KEY_FILE_ENV,
    SCHEDULER_SERVICE,
    issue_service_key,
    job_signer,
)
from qlcore.control.users import USERS_FILE, UserStore
from qlcore.ops.auditing import audit
from qlcore.ops.bundles import Bundle
from qlcore.ops.controls import is_paused
from qlcore.ops.notebooks import ParameterError, check_not_secret, inspect_notebook
from qlcore.ops.runner import (
    FAILED,
    SUCCEEDED,
    TIMEOUT,
    NotebookRun,
    Outcome,
    read_outcome,
    run_notebook,
)
from qlcore.ops.schedules import (
    GateRefused,
    ScheduleRecord,
    check_gate,
    read_schedule,
    schedule_path,
)
from qlcore.store.db import connect, project_data_dir
from qlcore.store.liveness import HOST, process_start, same_process_alive
from qlcore.store.scrub import Scrubber, scrubber
from qlcore.store.tables import job_run_processes, job_runs

RUNNING, REFUSED = "running", "refused"
ALERT_STATUSES = (FAILED, TIMEOUT, REFUSED)
WORK_DIR = ".work"  # data/runs/.work/<run id>/: a run's spec, stderr and outcome while it is in progress
RUN_KEY_FILE = "run.key"  # in the run's folder: its one-run signing key (0600)
GRANT_MARGIN_S = 120  # a run's grant outlives its timeout by this (its last commands may still be waiting)
BUNDLE = "bundle"  # data/runs/.work/<run id>/bundle/: the approved notebook and modules the run executes
_UNRECORDED_S = 60.0  # a run row gets its process row within this (only starting the child lies between)


class RunRefused(Exception):
    """A run that cannot even be attempted: no schedule record, the job is paused, or one is in progress."""


@dataclass(frozen=True, slots=True)
class JobRun:
    """One stored attempt of a job (a refused run never started a kernel)."""

    run_id: str
    job_id: str
    attempt: int
    trigger: str
    status: str
    started_at: str
    finished_at: str | None
    duration_ms: int | None
    approved_hash: str
    code_hash: str
    failing_cell: int | None
    error: str | None
    output_path: str | None
    params: dict[str, Any]

    @property
    def is_alert(self) -> bool:
        return self.status in ALERT_STATUSES


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds")


def execute_run(
    job_id: str,
    *,
    schedules_dir: Path,
    db: str | Engine | None = None,
    data_dir: Path | None = None,
    trigger: str = "schedule",
    actor: str = "scheduler",
    users_file: Path | None = None,
) -> JobRun:
    """Gate, run and record one firing of `job_id` (with its retries); the last attempt's record.

    `data_dir` holds the approved copies, the runs and (unless `users_file` says otherwise) the
    users file whose public keys verify the approval."""
    engine = db if isinstance(db, Engine) else connect(db)
    subject = f"job/{job_id}"
    data_dir = data_dir or project_data_dir()
    try:
        file = schedule_path(schedules_dir, job_id)
    except ValueError as exc:
        audit(engine, actor, "job.run_refused", "job/(invalid id)", {"reason": str(exc)})
        raise RunRefused(str(exc)) from None
    if not file.is_file():
        audit(engine, actor, "job.run_refused", subject, {"reason": f"no schedule record {file}"})
        raise RunRefused(f"no schedule record for job {job_id!r} ({file}); approve a submission first")
    if is_paused(job_id, db=engine):
        audit(engine, actor, "job.run_skipped", subject, {"reason": "paused"})
        raise RunRefused(f"job {job_id} is paused (`qlcore jobs resume {job_id}`)")
    record = read_schedule(file)
    running = settle_runs(db=engine, job_id=job_id, actor=actor)
    if running:
        audit(engine, actor, "job.run_skipped", subject, {"reason": "in progress", "run_id": running[0].run_id})
        raise RunRefused(f"job {job_id} has a run in progress ({running[0].run_id}, started {running[0].started_at})")

    params = {**record.params, "job_id": job_id, "code_hash": record.approved_hash, "mode": record.mode}
    try:
        check_not_secret(list(record.params))
        bundle = check_gate(record, db=engine, data_dir=data_dir, users_file=users_file)
    except (GateRefused, ParameterError) as exc:
        return _refused(engine, record, trigger, actor, params, str(exc))

    run: JobRun | None = None
    for attempt in range(1, record.retries + 2):
        run = _attempt(engine, record, attempt, trigger, actor, params, bundle, data_dir)
        if run.status == SUCCEEDED:
            break
    assert run is not None
    return run


def _attempt(engine: Engine, record: ScheduleRecord, attempt: int, trigger: str, actor: str,
             params: dict[str, Any], bundle: Bundle, data_dir: Path) -> JobRun:
    code_hash = bundle.code_hash
    started = _now()
    run_id = f"run-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    params = {**params, "run_id": run_id}
    output = _output_path(data_dir, record.job_id, started, attempt)
    row = {
        "run_id": run_id, "job_id": record.job_id, "attempt": attempt, "trigger": trigger, "status": RUNNING,
        "started_at": _iso(started), "approved_hash": record.approved_hash, "code_hash": code_hash,
        "output_path": str(output), "params": json.dumps(params, sort_keys=True),
    }
    with engine.begin() as conn:
        conn.execute(insert(job_runs).values(**row))
    audit(engine, actor, "job.run_started", f"job/{record.job_id}",
          {"run_id": run_id, "attempt": attempt, "trigger": trigger, "code_hash": code_hash})

    workdir = Path(data_dir) / "runs" / WORK_DIR / run_id
    env = dict(os.environ)
    # the job's commands go to the store this run is recorded in (a URL the child reads from its environment)
    env["QLCORE_DB_URL"] = engine.url.render_as_string(hide_password=False)
    signer = _run_signer(engine, actor, record, params, code_hash, data_dir)
    key_file = workdir / RUN_KEY_FILE
    signer.key.save(key_file)
    env[RUN_KEY_FILE_ENV], env[JOB_GRANT_ENV] = str(key_file), orjson.dumps(asdict(signer.grant)).decode()
    try:
        # the run's input is written from the bytes the gate hashed: a file swapped since is not what runs
        nb = bundle.write(workdir / BUNDLE)
        outcome = run_notebook(NotebookRun(nb, output, params, nb.parent, record.timeout_s), workdir, env=env,
                               on_start=lambda pid: _record_process(engine, run_id, pid, workdir))
    except OSError as exc:  # the child could not be started: stored as a failed run, not left "running"
        outcome = Outcome(FAILED, f"could not start the run's process: {exc}")
    try:
        return finish_run(engine, run_id, outcome, actor)
    finally:
        key_file.unlink(missing_ok=True)


def _run_signer(engine: Engine, actor: str, record: ScheduleRecord, params: dict[str, Any], code_hash: str,
                data_dir: Path) -> JobSigner:
    """A one-run key with the scheduler's grant: the job's strategy and symbols (its parameters over the
    notebook's defaults), its approved hash, for the run's timeout and a margin."""
    users = UserStore(Path(data_dir) / USERS_FILE,  # a scheduler key made here (first run) is audited
                      on_change=lambda action, name, details: audit(engine, actor, action, f"user/{name}", details))
    issuer = issue_service_key(users, SCHEDULER_SERVICE, issues_grants=True)
    values = {**inspect_notebook(record.notebook_path).defaults, **params}
    strategies = [str(values["strategy_id"])] if values.get("strategy_id") else []
    symbols = values.get("symbols") or []
    if isinstance(symbols, str):  # as papermill may pass a list: JSON text, or "A,B"
        text = symbols.strip()
        symbols = json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
    return job_signer(issuer, record.job_id, strategies=strategies, symbols=[str(s) for s in symbols],
                      code_hash=code_hash, valid_s=record.timeout_s + GRANT_MARGIN_S)


def _record_process(engine: Engine, run_id: str, pid: int, workdir: Path) -> None:
    me = os.getpid()
    with engine.begin() as conn:
        conn.execute(insert(job_run_processes).values(
            run_id=run_id, host=HOST, pid=pid, pid_start=process_start(pid), parent_pid=me,
            parent_start=process_start(me), workdir=str(workdir)))


def finish_run(engine: Engine, run_id: str, outcome: Outcome, actor: str) -> JobRun:
    """Store how a ``running`` run ended (once: a run already finished is returned as it is).

    The output notebook names the failing cell (or the one running when the run was stopped), is
    scrubbed of secrets and made read-only; the run's process row and folder go."""
    run = get_run(run_id, db=engine)
    output = Path(run.output_path) if run.output_path else None
    status, error = outcome.status, outcome.error
    failing_cell, cell_error = _failure(output, interrupted=status != SUCCEEDED)
    if status == FAILED and cell_error:
        error = cell_error
    secrets = Scrubber(scrubber(urls=[engine.url]).secrets + tuple(_run_key(engine, run_id)))
    kept = output is not None and output.is_file()
    if kept:
        assert output is not None
        secrets.notebook(output)
        output.chmod(0o400)  # the archive of what ran: never edited afterwards, read by its owner only
    finished = _now()
    values = {
        "status": status, "finished_at": _iso(finished),
        "duration_ms": int((finished - datetime.fromisoformat(run.started_at)).total_seconds() * 1000),
        "failing_cell": failing_cell, "error": secrets.text(error) if error else None,
        "output_path": str(output) if kept else None,
    }
    with engine.begin() as conn:
        moved = conn.execute(update(job_runs).where(job_runs.c.run_id == run_id, job_runs.c.status == RUNNING)
                             .values(**values)).rowcount
        workdir = conn.execute(select(job_run_processes.c.workdir)
                               .where(job_run_processes.c.run_id == run_id)).scalar_one_or_none()
        conn.execute(delete(job_run_processes).where(job_run_processes.c.run_id == run_id))
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    if moved:
        audit(engine, actor, f"job.run_{status}", f"job/{run.job_id}",
              {"run_id": run_id, "attempt": run.attempt, "failing_cell": failing_cell, "error": values["error"],
               "output_path": values["output_path"]})
    return get_run(run_id, db=engine)


def _run_key(engine: Engine, run_id: str) -> list[str]:
    """The run's private key (from its folder), to blank out of its outputs like the other secrets."""
    with engine.connect() as conn:
        workdir = conn.execute(select(job_run_processes.c.workdir)
                               .where(job_run_processes.c.run_id == run_id)).scalar_one_or_none()
    file = Path(workdir) / RUN_KEY_FILE if workdir else None
    return [file.read_text().strip()] if file is not None and file.is_file() else []


def _refused(engine: Engine, record: ScheduleRecord, trigger: str, actor: str, params: dict[str, Any],
             reason: str) -> JobRun:
    started = _now()
    run_id = f"run-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    current = ""  # a refused run executed nothing
    row = {
        "run_id": run_id, "job_id": record.job_id, "attempt": 1, "trigger": trigger, "status": REFUSED,
        "started_at": _iso(started), "finished_at": _iso(started), "duration_ms": 0,
        "approved_hash": record.approved_hash, "code_hash": current, "error": scrubber(urls=[engine.url]).text(reason),
        "params": json.dumps({**params, "run_id": run_id}, sort_keys=True),
    }
    with engine.begin() as conn:
        conn.execute(insert(job_runs).values(**row))
    audit(engine, actor, "job.gate_refused", f"job/{record.job_id}",
          {"run_id": run_id, "reason": reason, "approved_hash": record.approved_hash, "current_hash": current})
    return get_run(run_id, db=engine)


def _output_path(data_dir: Path, job_id: str, started: datetime, attempt: int) -> Path:
    folder = Path(data_dir) / "runs" / job_id
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y%m%dT%H%M%S}Z" + (f"-attempt{attempt}" if attempt > 1 else "")
    path = folder / f"{stem}.ipynb"
    n = 2
    while path.exists():  # two runs in the same second (a run-now beside a scheduled one)
        path, n = folder / f"{stem}-{n}.ipynb", n + 1
    return path


# --- the outcome ------------------------------------------------------------------------------------
def _failure(output: Path | None, *, interrupted: bool) -> tuple[int | None, str | None]:
    """(index of the failing cell in the submitted notebook, its error) from the output notebook; of a run
    stopped from outside (timeout, its scheduler gone), the cell that was running."""
    if output is None or not output.is_file():
        return None, None
    import nbformat

    try:
        nb = nbformat.read(os.fspath(output), as_version=4)
    except Exception:  # a notebook the child could not finish writing
        return None, None
    index = -1
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or "papermill-error-cell-tag" in tags:
            continue  # cells papermill added: not in the submitted notebook
        index += 1
        if cell.get("cell_type") != "code":
            continue
        state = cell.get("metadata", {}).get("papermill", {}).get("status")
        if interrupted and state == "running":
            return index, None
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return index, f"cell {index}: {out.get('ename')}: {out.get('evalue')}"
    return None, None


def settle_runs(*, db: str | Engine | None = None, job_id: str | None = None, actor: str = "scheduler"
                ) -> list[JobRun]:
    """Look at every run recorded as ``running`` (of `job_id`, when given) and store the truth about it.

    A run whose starter (the scheduler or CLI that started it: pid and start time) lives is its
    starter's to finish. Once the starter is gone: a run whose process (pid and start time) is gone
    too gets the outcome its process wrote, or a failure saying it ended without one (killed); one
    whose process lives (PR_SET_PDEATHSIG could not reach it) is stopped, and records that itself. A
    run without a process row older than `_UNRECORDED_S` never started one. Returns the runs that are
    still in progress: nothing may start the same job beside them.
    """
    engine = db if isinstance(db, Engine) else connect(db)
    c = job_runs.c
    query = select(job_runs.c.run_id).where(c.status == RUNNING)
    if job_id is not None:
        query = query.where(c.job_id == job_id)
    with engine.connect() as conn:
        ids = list(conn.execute(query).scalars())
        procs = {row.run_id: row for row in conn.execute(
            select(job_run_processes).where(job_run_processes.c.run_id.in_(ids)))} if ids else {}
    live = []
    for run_id in ids:
        run, proc = get_run(run_id, db=engine), procs.get(run_id)
        if proc is None:
            if _age_s(run) < _UNRECORDED_S:
                live.append(run)  # its starter is between writing the row and starting the process
            else:
                finish_run(engine, run_id, Outcome(FAILED, "abandoned: no process was ever recorded for this run "
                                                           "(its starter stopped before starting it)"), actor)
        elif proc.host != HOST or same_process_alive(proc.parent_pid, proc.parent_start):
            live.append(run)  # its starter lives (here, or on another machine): it stores the outcome
        elif same_process_alive(proc.pid, proc.pid_start):
            _signal_group(proc.pid)  # an orphan: its runner records "stopped", settled at the next look
            live.append(run)
        else:
            finish_run(engine, run_id, read_outcome(Path(proc.workdir)), actor)
    return live


def _signal_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


# --- reading runs -------------------------------------------------------------------------------------
def _age_s(run: JobRun) -> float:
    return (_now() - datetime.fromisoformat(run.started_at)).total_seconds()


def get_run(run_id: str, *, db: str | Engine | None = None) -> JobRun:
    """One stored run; `LookupError` if there is none."""
    engine = db if isinstance(db, Engine) else connect(db)
    with engine.connect() as conn:
        row = conn.execute(select(job_runs).where(job_runs.c.run_id == run_id)).first()
    if row is None:
        raise LookupError(f"no run {run_id!r}")
    return _from_row(row)


def list_runs(job_id: str | None = None, limit: int = 50, *, db: str | Engine | None = None,
              statuses: Iterable[str] | None = None) -> list[JobRun]:
    """Stored runs, newest first; of one job, and of some statuses, when given."""
    engine = db if isinstance(db, Engine) else connect(db)
    query = select(job_runs)
    if job_id is not None:
        query = query.where(job_runs.c.job_id == job_id)
    if statuses is not None:
        query = query.where(job_runs.c.status.in_(list(statuses)))
    query = query.order_by(job_runs.c.started_at.desc(), job_runs.c.run_id.desc()).limit(limit)
    with engine.connect() as conn:
        return [_from_row(r) for r in conn.execute(query).all()]


def job_alerts(limit: int = 50, *, db: str | Engine | None = None) -> list[JobRun]:
    """The runs a desk must look at (refused, failed, timed out), newest first: what dashboards list."""
    return list_runs(None, limit, db=db, statuses=ALERT_STATUSES)


def _from_row(row: Any) -> JobRun:
    return JobRun(
        run_id=row.run_id, job_id=row.job_id, attempt=row.attempt, trigger=row.trigger, status=row.status,
        started_at=row.started_at, finished_at=row.finished_at, duration_ms=row.duration_ms,
        approved_hash=row.approved_hash, code_hash=row.code_hash, failing_cell=row.failing_cell, error=row.error,
        output_path=row.output_path, params=json.loads(row.params),
    )

