"""One scheduled run of an approved notebook: the gate, papermill in a subprocess, the run record.

`execute_run` reads top to bottom like papermill's ``execute_notebook``: read the job's record,
pass the gate (a refusal is stored as a run with both hashes, and audited), write the ``running``
row, run the notebook in a child process that is killed at the job's timeout, keep the output
notebook read-only under ``data/runs/<job>/``, then store the outcome. A failed or timed-out
attempt is retried as the record says. Refused, failed and timed-out runs are the job alerts.

Secrets reach a job through the environment only: the child inherits it, parameters that look
like secrets are refused, and the values of secret-named variables are blanked out of the output
notebook and the run record should a notebook print or raise them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, update

from qlcore.ops.auditing import audit
from qlcore.ops.controls import is_paused
from qlcore.ops.notebooks import SECRET_NAME, ParameterError, check_not_secret, notebook_hash
from qlcore.ops.schedules import (
    GateRefused,
    ScheduleRecord,
    check_gate,
    read_schedule,
    schedule_path,
)
from qlcore.store.db import connect, project_data_dir
from qlcore.store.tables import job_runs

RUNNING, SUCCEEDED, FAILED, TIMEOUT, REFUSED = "running", "succeeded", "failed", "timeout", "refused"
ALERT_STATUSES = (FAILED, TIMEOUT, REFUSED)
REDACTED = "***"
_KILL_GRACE_S = 5.0  # after the timeout: the child gets SIGTERM, then SIGKILL this much later


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
) -> JobRun:
    """Gate, run and record one firing of `job_id` (with its retries); the last attempt's record."""
    engine = db if isinstance(db, Engine) else connect(db)
    subject = f"job/{job_id}"
    file = schedule_path(schedules_dir, job_id)
    if not file.is_file():
        audit(engine, actor, "job.run_refused", subject, {"reason": f"no schedule record {file}"})
        raise RunRefused(f"no schedule record for job {job_id!r} ({file}); approve a submission first")
    if is_paused(job_id, db=engine):
        audit(engine, actor, "job.run_skipped", subject, {"reason": "paused"})
        raise RunRefused(f"job {job_id} is paused (`qlcore jobs resume {job_id}`)")
    record = read_schedule(file)
    running = [r for r in list_runs(job_id, limit=5, db=engine) if r.status == RUNNING]
    if running and _age_s(running[0]) < record.timeout_s + 60:
        raise RunRefused(f"job {job_id} has a run in progress ({running[0].run_id}, started {running[0].started_at})")

    params = {**record.params, "job_id": job_id, "code_hash": record.approved_hash, "mode": record.mode}
    try:
        check_not_secret(list(record.params))
        current = check_gate(record)
    except (GateRefused, ParameterError) as exc:
        return _refused(engine, record, trigger, actor, params, str(exc))

    run: JobRun | None = None
    for attempt in range(1, record.retries + 2):
        run = _attempt(engine, record, attempt, trigger, actor, params, current, data_dir or project_data_dir())
        if run.status == SUCCEEDED:
            break
    assert run is not None
    return run


def _attempt(engine: Engine, record: ScheduleRecord, attempt: int, trigger: str, actor: str,
             params: dict[str, Any], code_hash: str, data_dir: Path) -> JobRun:
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

    try:
        status, error = _papermill(record, output, params, engine)
    except OSError as exc:  # the child could not be started: stored as a failed run, not left "running"
        status, error = FAILED, f"could not start the run's process: {exc}"
    failing_cell, cell_error = _failure(output, timed_out=status == TIMEOUT)
    if status == FAILED and cell_error:
        error = cell_error
    secrets = secret_values()
    if output.is_file():
        _scrub_file(output, secrets)
        output.chmod(0o400)  # the archive of what ran: never edited afterwards, read by its owner only
    finished = _now()
    values = {
        "status": status, "finished_at": _iso(finished),
        "duration_ms": int((finished - started).total_seconds() * 1000), "failing_cell": failing_cell,
        "error": scrub(error, secrets) if error else None, "output_path": str(output) if output.is_file() else None,
    }
    with engine.begin() as conn:
        conn.execute(update(job_runs).where(job_runs.c.run_id == run_id).values(**values))
    audit(engine, actor, f"job.run_{status}", f"job/{record.job_id}",
          {"run_id": run_id, "attempt": attempt, "failing_cell": failing_cell, "error": values["error"],
           "output_path": values["output_path"]})
    return get_run(run_id, db=engine)


def _refused(engine: Engine, record: ScheduleRecord, trigger: str, actor: str, params: dict[str, Any],
             reason: str) -> JobRun:
    started = _now()
    run_id = f"run-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    current = ""
    if record.notebook_path.is_file():
        current = notebook_hash(record.notebook_path)
    row = {
        "run_id": run_id, "job_id": record.job_id, "attempt": 1, "trigger": trigger, "status": REFUSED,
        "started_at": _iso(started), "finished_at": _iso(started), "duration_ms": 0,
        "approved_hash": record.approved_hash, "code_hash": current, "error": reason,
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


# --- the child process ----------------------------------------------------------------------------
def _papermill(record: ScheduleRecord, output: Path, params: dict[str, Any], engine: Engine) -> tuple[str, str | None]:
    """Run the notebook in a child process; (status, error). The child is killed at the job's timeout."""
    nb = record.notebook_path
    env = dict(os.environ)
    # the job's commands go to the store this run is recorded in (a URL the child reads from its environment)
    env["QLCORE_DB_URL"] = engine.url.render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory(prefix="qlcore-run-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"input": str(nb), "output": str(output), "params": params, "cwd": str(nb.parent),
                                    "timeout_s": record.timeout_s}))
        log = Path(tmp) / "stderr.txt"
        with open(log, "wb") as err:
            child = subprocess.Popen([sys.executable, "-m", "qlcore.ops.runner", str(spec)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
            try:
                code = child.wait(timeout=record.timeout_s)
            except subprocess.TimeoutExpired:
                _kill(child)
                return TIMEOUT, f"timeout: the run exceeded {record.timeout_s} s and was stopped"
        if code == 0:
            return SUCCEEDED, None
        result = Path(tmp) / "spec.json.result"
        if result.is_file():
            error = json.loads(result.read_text())["error"]
            # a cell that outlived papermill's per-cell limit (the same timeout) before the parent's clock ran out
            return (TIMEOUT if error.startswith("CellTimeoutError") else FAILED), error
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        return FAILED, f"the run's process exited with code {code}: {' | '.join(tail)}"


def _kill(child: subprocess.Popen[bytes]) -> None:
    # the kernel watches its parent (the runner) and exits when it goes away
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=_KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    except ProcessLookupError:
        child.wait()


def _failure(output: Path, *, timed_out: bool) -> tuple[int | None, str | None]:
    """(index of the failing cell in the submitted notebook, its error) from the output notebook."""
    if not output.is_file():
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
        if timed_out and state == "running":
            return index, None
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return index, f"cell {index}: {out.get('ename')}: {out.get('evalue')}"
    return None, None


# --- secrets ----------------------------------------------------------------------------------------
def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look like secrets (long enough to be worth blanking)."""
    env = os.environ if environ is None else environ
    return sorted({v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        text = text.replace(value, REDACTED)
    return text


def _scrub_file(path: Path, secrets: list[str]) -> None:
    text = path.read_text(encoding="utf-8")
    clean = scrub(text, [json.dumps(s)[1:-1] for s in secrets])  # as the value appears inside JSON strings
    if clean != text:
        path.write_text(clean, encoding="utf-8")


def close_abandoned(*, db: str | Engine | None = None) -> list[str]:
    """Mark scheduled runs still ``running`` as failed: called by a scheduler that just took the lease,
    so no scheduler is running them any more (a run-now from the CLI, trigger ``manual``, is left alone)."""
    engine = db if isinstance(db, Engine) else connect(db)
    c = job_runs.c
    with engine.begin() as conn:
        ids = list(conn.execute(select(c.run_id).where(c.status == RUNNING, c.trigger == "schedule")).scalars())
        if ids:
            conn.execute(update(job_runs).where(c.run_id.in_(ids), c.status == RUNNING).values(
                status=FAILED, finished_at=_iso(_now()),
                error="abandoned: the scheduler stopped while this run was in progress"))
    return ids


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

