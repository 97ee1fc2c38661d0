"""`qlcore submit|approve|reject|revoke|submissions`: the review gate between a notebook and a live job.

`qlcore scheduler` and `qlcore jobs ...` (`qlcore.ops.jobs_cli`) run what was approved.

Each review command acts as a proven user: ``--user`` (else ``QLCORE_USER``, else the login name)
names whose signing key is loaded (``keys/<name>.key`` beside the users file, or ``QLCORE_KEY_FILE``);
without a usable key the command stops with one line and exit code 2. The name alone proves nothing:
the key must be the one the users file holds for that user.

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
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="users file, submissions and approved copies "
                                                                  "(default: QLCORE_DATA_DIR or data/)")]


def _user_option(*aliases: str, what: str) -> Any:
    return typer.Option("--user", *aliases, help=f"who {what}: their signing key is used (default: QLCORE_USER or "
                                                 "login name)")


def _signing_key(user: str | None, data_dir: Path | None) -> Any:
    """The acting user's signing key (`qlcore.control.keys.user_signing_key`); one line and exit 2 without one."""
    from qlcore.cli import UserError
    from qlcore.control.identity import CredentialError
    from qlcore.control.keys import user_signing_key
    from qlcore.control.users import USERS_FILE
    from qlcore.engine.cli import resolve_user
    from qlcore.store.db import project_data_dir

    try:
        return user_signing_key((data_dir or project_data_dir()) / USERS_FILE, resolve_user(user))
    except CredentialError as exc:
        raise UserError(str(exc)) from None


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input from the user becomes one line on stderr and exit code 2 (`qlcore.cli.UserError`)."""
    from qlcore.cli import UserError
    from qlcore.control.reviews import IdentityError
    from qlcore.ops.notebooks import NoParametersCellError, NotANotebookError, ParameterError
    from qlcore.ops.schedules import InvalidCronError, InvalidIdentifierError
    from qlcore.ops.submissions import ReviewError, UnknownSubmissionError

    try:
        yield
    except (NoParametersCellError, NotANotebookError, ParameterError, InvalidCronError, InvalidIdentifierError,
            IdentityError, ReviewError, UnknownSubmissionError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None


def _number_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def submit_cmd(
    notebook: Annotated[Path, typer.Argument(help="the notebook to submit (needs a cell tagged 'parameters')")],
    user: Annotated[str | None, _user_option("--author", what="submits it")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="parameter NAME=VALUE (repeatable)")] = None,
    timeout: Annotated[int, typer.Option(help="seconds the run may take before it is stopped")] = 600,
    db: Db = None,
    data_dir: DataDir = None,
) -> None:
    """Run a notebook with papermill and record it for review, signed; exit 1 if the notebook fails."""
    from qlcore.ops.submissions import submit

    key = _signing_key(user, data_dir)
    with _user_errors():
        from qlcore.cli import _parse_params  # not at the top: qlcore.cli imports this module

        sub = submit(notebook, _parse_params(param or [], "--param"), key, db=db, data_dir=data_dir,
                     timeout_s=timeout)
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
    typer.echo(f"next (another person, a trader or admin): qlcore approve {sub.id} --user NAME --schedule 'CRON'")


def approve_cmd(
    submission: Annotated[str, typer.Argument(help="submission id (see `qlcore submissions`)")],
    schedule: Annotated[str, typer.Option("--schedule", help="cron, 5 fields, America/New_York time, e.g. '35 15 * * mon-fri'")],
    user: Annotated[str | None, _user_option("--reviewer", what="approves (not the author)")] = None,
    mode: Annotated[str, typer.Option(help="paper or live")] = "paper",
    limit: Annotated[list[str] | None, typer.Option("--limit", help="run limit NAME=VALUE (repeatable)")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="job id (default: the notebook's name)")] = None,
    timeout: Annotated[int, typer.Option(help="seconds a scheduled run may take")] = 600,
    retries: Annotated[int, typer.Option(help="retries of a failed scheduled run")] = 0,
    allow_self_approval: Annotated[bool, typer.Option("--allow-self-approval", help="approve your own submission "
                                                      "(admins only, with --reason; audited)")] = False,
    reason: Annotated[str, typer.Option("--reason", help="why (required for a self-approval; recorded)")] = "",
    all_days: Annotated[bool, typer.Option("--all-days", help="fire on every day the cron names, not only on "
                                                              "exchange trading days")] = False,
    db: Db = None,
    schedules_dir: SchedulesDir = None,
    data_dir: DataDir = None,
) -> None:
    """Approve a succeeded submission (signed), copy it read-only under data/approved/, write its schedule record."""
    from qlcore.cli import _parse_params  # not at the top: qlcore.cli imports this module
    from qlcore.ops.schedules import schedule_path
    from qlcore.ops.submissions import DEFAULT_SCHEDULES_DIR, approve

    limits = {k: _number_or_text(v) for k, v in _parse_params(limit or [], "--limit").items()}
    key = _signing_key(user, data_dir)
    with _user_errors():
        record = approve(submission, key, schedule, mode, limits, allow_self_approval, reason=reason, job_id=job_id,
                         timeout_s=timeout, retries=retries, trading_days_only=not all_days, db=db,
                         schedules_dir=schedules_dir, data_dir=data_dir)
    file = schedule_path(schedules_dir or DEFAULT_SCHEDULES_DIR, record.job_id)
    typer.secho(f"approved {submission} as job {record.job_id} (version {record.version})", fg=typer.colors.GREEN)
    typer.echo(f"  hash {record.approved_hash}, cron '{record.cron}' {record.timezone}, mode {record.mode}")
    typer.echo(f"  schedule record: {file}")


def reject_cmd(
    submission: Annotated[str, typer.Argument(help="submission id")],
    reason: Annotated[str, typer.Option("--reason", help="why (recorded)")],
    user: Annotated[str | None, _user_option("--reviewer", what="rejects")] = None,
    db: Db = None,
    data_dir: DataDir = None,
) -> None:
    """Reject a submission with a reason (signed)."""
    from qlcore.ops.submissions import reject

    key = _signing_key(user, data_dir)
    with _user_errors():
        reject(submission, key, reason, db=db, data_dir=data_dir)
    typer.echo(f"rejected {submission}")


def revoke_cmd(
    job: Annotated[str, typer.Argument(help="job id (a file schedules/<job>.toml)")],
    reason: Annotated[str, typer.Option("--reason", help="why (recorded)")],
    user: Annotated[str | None, _user_option("--reviewer", what="revokes")] = None,
    db: Db = None,
    schedules_dir: SchedulesDir = None,
    data_dir: DataDir = None,
) -> None:
    """Revoke an approved job (signed): its schedule record gets a new version with status revoked."""
    from qlcore.ops.submissions import revoke

    key = _signing_key(user, data_dir)
    with _user_errors():
        record = revoke(job, key, reason, db=db, schedules_dir=schedules_dir, data_dir=data_dir)
    typer.echo(f"revoked job {record.job_id} (version {record.version})")


def submissions_cmd(
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 20,
    db: Db = None,
) -> None:
    """List submissions, newest first."""
    from qlcore.ops.submissions import list_submissions

    subs = list_submissions(limit, db=db)
    if not subs:
        typer.echo("no submissions yet: try `qlcore submit notebooks/strategies/sma_cross.ipynb --user NAME`")
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
