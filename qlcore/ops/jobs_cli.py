"""`qlcore scheduler` and `qlcore jobs list|history|run-now|pause|resume|alerts`.

Registered by `qlcore.ops.cli.register`. Heavy imports (APScheduler, papermill) happen inside the
commands, so that `qlcore --help` stays quick.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

jobs_app = typer.Typer(help="Scheduled notebook jobs: list, history, run-now, pause, resume, alerts.",
                       no_args_is_help=True)

Db = Annotated[str | None, typer.Option(help="store URL (default: QLCORE_DB_URL or data/qlcore.db)")]
SchedulesDir = Annotated[Path | None, typer.Option("--schedules-dir", help="schedule records (default: schedules/)")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="where runs are archived (default: data/)")]
Job = Annotated[str, typer.Argument(help="job id (a file schedules/<job>.toml)")]


def _schedules(schedules_dir: Path | None) -> Path:
    from qlcore.ops.submissions import DEFAULT_SCHEDULES_DIR

    return schedules_dir or DEFAULT_SCHEDULES_DIR


def _record_file(job: str, schedules_dir: Path | None) -> Path:
    from qlcore.cli import UserError
    from qlcore.ops.schedules import schedule_path

    file = schedule_path(_schedules(schedules_dir), job)
    if not file.is_file():
        raise UserError(f"no job {job!r}: {file} does not exist (see `qlcore jobs list`)")
    return file


def scheduler_cmd(
    db: Db = None,
    schedules_dir: SchedulesDir = None,
    data_dir: DataDir = None,
    misfire_grace: Annotated[int, typer.Option(help="seconds a late run may still start")] = 300,
    workers: Annotated[int, typer.Option(help="runs at the same time")] = 4,
    demo: Annotated[bool, typer.Option("--demo", help="approve the template job notebook as a demo job (records "
                                                      "under data/demo/schedules/) and run it at once")] = False,
    run_at_start: Annotated[list[str] | None, typer.Option(
        "--run-at-start", help="fire this job once as soon as its schedule is loaded (repeatable); "
                               "skipped while a run of it is still in progress")] = None,
) -> None:
    """Run the approved jobs of schedules/ on their crons, in the foreground (Ctrl-C or SIGTERM stops it)."""
    from qlcore.cli import UserError
    from qlcore.ops.lease import SchedulerAlreadyRunning
    from qlcore.ops.scheduler import JobScheduler, SchedulerConfig

    at_start = tuple(run_at_start or ())
    if demo:
        from qlcore.control.users import USERS_FILE
        from qlcore.ops.demo import DEMO_JOB, demo_identities, demo_schedules_dir, ensure_demo_job
        from qlcore.store.db import project_data_dir

        users_file = (data_dir or project_data_dir()) / USERS_FILE
        password = demo_identities(users_file)[2]
        if password is not None:
            typer.echo(f"first run: created user 'admin' with password {password}")
            typer.echo(f"  (also in {users_file.parent / 'initial-admin-password'}, mode 0600; change it: "
                       "qlcore users passwd admin)")
        schedules_dir = schedules_dir or demo_schedules_dir(data_dir)
        record = ensure_demo_job(db=db, schedules_dir=schedules_dir, data_dir=data_dir)
        at_start += (DEMO_JOB,)
        typer.echo(f"demo job {record.job_id} v{record.version}: {record.notebook}, cron '{record.cron}', "
                   f"see `qlcore jobs list --schedules-dir {schedules_dir}`")
    try:
        sched = JobScheduler(SchedulerConfig(db=db, schedules_dir=_schedules(schedules_dir), data_dir=data_dir,
                                             misfire_grace_s=misfire_grace, workers=workers,
                                             run_at_start=at_start))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    typer.echo(f"scheduler: jobs from {sched.config.schedules_dir}, store {sched.engine.url.render_as_string()}")
    try:
        sched.run()
    except SchedulerAlreadyRunning as exc:
        raise UserError(str(exc)) from None
    typer.echo("scheduler stopped")


def list_cmd(db: Db = None, schedules_dir: SchedulesDir = None) -> None:
    """The jobs of schedules/: status, cron, next run, last run."""
    from qlcore.ops.controls import paused_jobs
    from qlcore.ops.runs import list_runs
    from qlcore.ops.scheduler import cron_trigger
    from qlcore.ops.schedules import read_schedule

    files = sorted(_schedules(schedules_dir).glob("*.toml"))
    if not files:
        typer.echo("no jobs: approve a submission first (`qlcore approve SUBMISSION --user NAME --schedule CRON`)")
        return
    paused = paused_jobs(db=db)
    for file in files:
        try:
            rec = read_schedule(file)
        except Exception as exc:
            typer.secho(f"{file.stem:<20} invalid record: {exc}", fg=typer.colors.RED)
            continue
        status = "paused" if rec.job_id in paused and rec.status == "active" else rec.status
        nxt = cron_trigger(rec).get_next_fire_time(None, datetime.now(UTC)) if status == "active" else None
        last = list_runs(rec.job_id, limit=1, db=db)
        last_text = f"{last[0].status} {last[0].started_at}" if last else "never run"
        typer.echo(f"{rec.job_id:<20} v{rec.version:<3} {status:<8} '{rec.cron}' {rec.timezone}  "
                   f"next {nxt.isoformat() if nxt else '-'}  last {last_text}  {rec.notebook}")


def history_cmd(
    job: Annotated[str | None, typer.Argument(help="job id (all jobs when omitted)")] = None,
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 20,
    db: Db = None,
) -> None:
    """Runs, newest first: status, duration, failing cell and error, output notebook."""
    from qlcore.ops.runs import list_runs

    runs = list_runs(job, limit, db=db)
    if not runs:
        typer.echo("no runs yet")
    for r in runs:
        took = f"{r.duration_ms / 1000:.1f}s" if r.duration_ms is not None else "-"
        typer.echo(f"{r.run_id}  {r.job_id:<16} {r.status:<9} {r.started_at}  {took:>7}  {r.output_path or ''}")
        if r.error:
            cell = f"cell {r.failing_cell}: " if r.failing_cell is not None and not r.error.startswith("cell") else ""
            typer.echo(f"    {cell}{r.error}")


def alerts_cmd(limit: Annotated[int, typer.Option(help="how many, newest first")] = 20, db: Db = None) -> None:
    """Refused, failed and timed-out runs, newest first."""
    from qlcore.ops.runs import job_alerts

    alerts = job_alerts(limit, db=db)
    if not alerts:
        typer.echo("no job alerts")
    for r in alerts:
        typer.echo(f"{r.started_at}  {r.job_id:<16} {r.status:<8} {r.error}")


def run_now_cmd(job: Job, db: Db = None, schedules_dir: SchedulesDir = None, data_dir: DataDir = None) -> None:
    """Run a job now, in this process, through the same gate; exit 1 unless it succeeds."""
    from qlcore.cli import UserError
    from qlcore.ops.runs import RunRefused, execute_run

    _record_file(job, schedules_dir)
    try:
        run = execute_run(job, schedules_dir=_schedules(schedules_dir), db=db, data_dir=data_dir, trigger="manual",
                          actor="cli")
    except RunRefused as exc:
        raise UserError(str(exc)) from None
    ok = run.status == "succeeded"
    typer.secho(f"run {run.run_id}: {run.status}", fg=typer.colors.GREEN if ok else typer.colors.RED, bold=True)
    if run.output_path:
        typer.echo(f"  output  {run.output_path}")
    if run.error:
        typer.echo(f"  error   {run.error}")
    if not ok:
        raise typer.Exit(1)


def pause_cmd(
    job: Job,
    user: Annotated[str, typer.Option("--user", help="who pauses it")],
    reason: Annotated[str, typer.Option("--reason", help="why (recorded)")] = "",
    db: Db = None,
    schedules_dir: SchedulesDir = None,
) -> None:
    """Pause a job: its firings are skipped (kept across scheduler restarts) until it is resumed."""
    _set_paused(job, True, user, reason, db, schedules_dir)


def resume_cmd(
    job: Job,
    user: Annotated[str, typer.Option("--user", help="who resumes it")],
    reason: Annotated[str, typer.Option("--reason", help="why (recorded)")] = "",
    db: Db = None,
    schedules_dir: SchedulesDir = None,
) -> None:
    """Resume a paused job."""
    _set_paused(job, False, user, reason, db, schedules_dir)


def _set_paused(job: str, paused: bool, user: str, reason: str, db: str | None, schedules_dir: Path | None) -> None:
    from qlcore.ops.controls import set_paused

    _record_file(job, schedules_dir)  # an unknown job is refused before anything is recorded
    set_paused(job, paused, user, reason, db=db)
    typer.echo(f"{'paused' if paused else 'resumed'} job {job}")


JOBS_COMMANDS: dict[str, Callable[..., None]] = {
    "list": list_cmd, "history": history_cmd, "run-now": run_now_cmd, "pause": pause_cmd, "resume": resume_cmd,
    "alerts": alerts_cmd,
}
for _name, _fn in JOBS_COMMANDS.items():
    jobs_app.command(_name)(_fn)
