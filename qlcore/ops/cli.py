"""`qlcore submit|approve|reject|revoke|submissions`: the review gate between a notebook and a live job.

`qlcore scheduler` and `qlcore jobs ...` (`qlcore.ops.jobs_cli`) run what was approved.

`register(app)` adds the commands at the top level of the `qlcore` command (as the issue spells
them); `ops_app` holds the same commands for use as a sub-command group. Heavy imports happen
inside the commands, so that `qlcore --help` stays quick.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

ops_app = typer.Typer(help="Notebook review: submit, approve, reject, revoke, list submissions.", no_args_is_help=True)

Db = Annotated[str | None, typer.Option(help="store URL (default: QLCORE_DB_URL or data/qlcore.db)")]
SchedulesDir = Annotated[Path | None, typer.Option("--schedules-dir", help="where schedule records go (default: schedules/)")]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input from the user becomes one line on stderr and exit code 2 (`qlcore.cli.UserError`)."""
    from qlcore.cli import UserError
    from qlcore.ops.notebooks import NoParametersCellError, ParameterError
    from qlcore.ops.schedules import InvalidCronError
    from qlcore.ops.submissions import ReviewError, UnknownSubmissionError

    try:
        yield
    except (NoParametersCellError, ParameterError, InvalidCronError, ReviewError, UnknownSubmissionError) as exc:
        raise UserError(str(exc)) from None


def _number_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def submit_cmd(
    notebook: Annotated[Path, typer.Argument(help="the notebook to submit (needs a cell tagged 'parameters')")],
    author: Annotated[str, typer.Option("--author", help="who submits it")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="parameter NAME=VALUE (repeatable)")] = None,
    timeout: Annotated[int, typer.Option(help="seconds the run may take before it is stopped")] = 600,
    db: Db = None,
) -> None:
    """Run a notebook with papermill and record it for review; exit 1 if the notebook fails."""
    from qlcore.ops.submissions import submit

    with _user_errors():
        from qlcore.cli import _parse_params  # not at the top: qlcore.cli imports this module

        sub = submit(notebook, _parse_params(param or [], "--param"), author, db=db, timeout_s=timeout)
    ok = sub.status == "succeeded"
    typer.secho(f"submission {sub.id}: {sub.status}", fg=typer.colors.GREEN if ok else typer.colors.RED, bold=True)
    typer.echo(f"  notebook   {sub.notebook}")
    typer.echo(f"  code hash  {sub.code_hash}")
    typer.echo(f"  params     {json.dumps(sub.params, sort_keys=True)}")
    typer.echo(f"  output     {sub.output_path}")
    if sub.error:
        typer.echo(f"  error      {sub.error}")
    for name, value in (sub.results or {}).items():
        typer.echo(f"  recorded {name}: {json.dumps(value, sort_keys=True)}")
    if not ok:
        raise typer.Exit(1)
    typer.echo(f"next: qlcore approve {sub.id} --reviewer NAME --schedule 'CRON'")


def approve_cmd(
    submission: Annotated[str, typer.Argument(help="submission id (see `qlcore submissions`)")],
    reviewer: Annotated[str, typer.Option("--reviewer", help="who approves (not the author)")],
    schedule: Annotated[str, typer.Option("--schedule", help="cron, 5 fields, America/New_York time, e.g. '35 15 * * mon-fri'")],
    mode: Annotated[str, typer.Option(help="paper or live")] = "paper",
    limit: Annotated[list[str] | None, typer.Option("--limit", help="run limit NAME=VALUE (repeatable)")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="job id (default: the notebook's name)")] = None,
    timeout: Annotated[int, typer.Option(help="seconds a scheduled run may take")] = 600,
    retries: Annotated[int, typer.Option(help="retries of a failed scheduled run")] = 0,
    allow_self_approval: Annotated[bool, typer.Option("--allow-self-approval", help="let the author approve")] = False,
    all_days: Annotated[bool, typer.Option("--all-days", help="fire on every day the cron names, not only on "
                                                              "exchange trading days")] = False,
    db: Db = None,
    schedules_dir: SchedulesDir = None,
) -> None:
    """Approve a succeeded submission and write its schedule record under schedules/."""
    from qlcore.cli import _parse_params  # not at the top: qlcore.cli imports this module
    from qlcore.ops.schedules import schedule_path
    from qlcore.ops.submissions import DEFAULT_SCHEDULES_DIR, approve

    limits = {k: _number_or_text(v) for k, v in _parse_params(limit or [], "--limit").items()}
    with _user_errors():
        record = approve(submission, reviewer, schedule, mode, limits, allow_self_approval, job_id=job_id,
                         timeout_s=timeout, retries=retries, trading_days_only=not all_days, db=db,
                         schedules_dir=schedules_dir)
    file = schedule_path(schedules_dir or DEFAULT_SCHEDULES_DIR, record.job_id)
    typer.secho(f"approved {submission} as job {record.job_id} (version {record.version})", fg=typer.colors.GREEN)
    typer.echo(f"  hash {record.approved_hash}, cron '{record.cron}' {record.timezone}, mode {record.mode}")
    typer.echo(f"  schedule record: {file}")


def reject_cmd(
    submission: Annotated[str, typer.Argument(help="submission id")],
    reviewer: Annotated[str, typer.Option("--reviewer", help="who rejects")],
    reason: Annotated[str, typer.Option("--reason", help="why (recorded)")],
    db: Db = None,
) -> None:
    """Reject a submission with a reason."""
    from qlcore.ops.submissions import reject

    with _user_errors():
        reject(submission, reviewer, reason, db=db)
    typer.echo(f"rejected {submission}")


def revoke_cmd(
    job: Annotated[str, typer.Argument(help="job id (a file schedules/<job>.toml)")],
    reviewer: Annotated[str, typer.Option("--reviewer", help="who revokes")],
    reason: Annotated[str, typer.Option("--reason", help="why (recorded)")],
    db: Db = None,
    schedules_dir: SchedulesDir = None,
) -> None:
    """Revoke an approved job: its schedule record gets a new version with status revoked."""
    from qlcore.ops.submissions import revoke

    with _user_errors():
        record = revoke(job, reviewer, reason, db=db, schedules_dir=schedules_dir)
    typer.echo(f"revoked job {record.job_id} (version {record.version})")


def submissions_cmd(
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 20,
    db: Db = None,
) -> None:
    """List submissions, newest first."""
    from qlcore.ops.submissions import list_submissions

    subs = list_submissions(limit, db=db)
    if not subs:
        typer.echo("no submissions yet: try `qlcore submit notebooks/strategies/sma_cross.ipynb --author NAME`")
        return
    for s in subs:
        typer.echo(f"{s.id}  {s.created_at}  {s.status:<9} {s.author:<12} {s.code_hash[:12]}  {s.notebook}")


COMMANDS: dict[str, Callable[..., None]] = {
    "submit": submit_cmd,
    "approve": approve_cmd,
    "reject": reject_cmd,
    "revoke": revoke_cmd,
    "submissions": submissions_cmd,
}
for _name, _fn in COMMANDS.items():
    ops_app.command(_name)(_fn)


def register(app: typer.Typer) -> None:
    """Add the review commands at the top level of `app` (``qlcore submit ...``), `scheduler` and `jobs`."""
    from qlcore.ops.jobs_cli import jobs_app, scheduler_cmd

    for name, fn in COMMANDS.items():
        app.command(name)(fn)
    app.command("scheduler")(scheduler_cmd)
    app.add_typer(jobs_app, name="jobs")
