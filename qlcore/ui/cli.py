"""`qlcore serve` and `qlcore users`: the dashboards and their users. `register(app)` adds both."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

users_app = typer.Typer(help="Desk users of the dashboards: add, change password or role, list.", no_args_is_help=True)

UsersFileOption = Annotated[
    Path | None, typer.Option("--users-file", help="users file (default: users.toml under the data folder)")
]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="read the password from standard input")]


def _store(users_file: Path | None):  # -> UserStore, imported on use
    """The users file; each change is audited as the OS user running the command (``os:<login>``)."""
    import getpass

    from qlcore.control.users import USERS_FILE, UserStore
    from qlcore.store.db import connect, project_data_dir
    from qlcore.ui.actions import audit_user_changes

    return UserStore(users_file or project_data_dir() / USERS_FILE,
                     on_change=audit_user_changes(connect, f"os:{getpass.getuser()}"))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


def _run(action) -> None:  # AuthError is the user's mistake: one line, exit 2
    from qlcore.control.users import AuthError

    try:
        action()
    except AuthError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="user name")],
    role: Annotated[str, typer.Option(help="viewer, trader or admin")] = "viewer",
    password_stdin: PasswordStdin = False,
    users_file: UsersFileOption = None,
) -> None:
    """Add a user (the password is stored as a salted scrypt hash) and issue their signing key."""
    from qlcore.control.keys import issue_user_key

    store = _store(users_file)
    _run(lambda: store.add(name, role, _password(password_stdin)))
    key_path = issue_user_key(store, name)
    typer.echo(f"added {name} ({role}) to {store.path}; their signing key is {key_path} (0600: hand it to them)")


@users_app.command("key")
def users_key(name: Annotated[str, typer.Argument(help="user name")], users_file: UsersFileOption = None) -> None:
    """Issue a new signing key for a user (the old one stops working at once)."""
    from qlcore.control.keys import issue_user_key

    store = _store(users_file)
    paths: list[Path] = []
    _run(lambda: paths.append(issue_user_key(store, name)))
    typer.echo(f"new signing key for {name}: {paths[0]} (0600: hand it to them; the old key no longer works)")


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="user name")],
    password_stdin: PasswordStdin = False,
    users_file: UsersFileOption = None,
) -> None:
    """Change a user's password (their open sessions end)."""
    store = _store(users_file)
    _run(lambda: store.set_password(name, _password(password_stdin)))
    typer.echo(f"password of {name} changed")


@users_app.command("role")
def users_role(
    name: Annotated[str, typer.Argument(help="user name")],
    role: Annotated[str, typer.Argument(help="viewer, trader or admin")],
    users_file: UsersFileOption = None,
) -> None:
    """Change a user's role (takes effect at the user's next action; a lower one ends their sessions)."""
    store = _store(users_file)
    _run(lambda: store.set_role(name, role))
    typer.echo(f"{name} is now {role}")


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="user name")], users_file: UsersFileOption = None) -> None:
    """Remove a user (their open sessions end within seconds)."""
    store = _store(users_file)
    _run(lambda: store.remove(name))
    typer.echo(f"removed {name}")


@users_app.command("list")
def users_list(users_file: UsersFileOption = None) -> None:
    """List the users and their roles."""
    for user in sorted(_store(users_file).users().values(), key=lambda u: u.name):
        typer.echo(f"{user.name:<24} {user.role.label:<8} {'key ' + user.key[:12] if user.key else 'no key'}")


def serve(
    port: Annotated[int, typer.Option(help="port to listen on")] = 5006,
    address: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    no_browser: Annotated[bool, typer.Option("--no-browser", help="do not open a browser")] = False,
    db: Annotated[str | None, typer.Option(help="store URL (default: QLCORE_DB_URL or data/qlcore.db)")] = None,
    engine_id: Annotated[str | None, typer.Option(help="show this engine (default: the freshest heartbeat)")] = None,
    users_file: UsersFileOption = None,
    allow_origin: Annotated[
        list[str] | None, typer.Option(help="websocket origin host:port to accept (default: the served one)")
    ] = None,
    period_ms: Annotated[int, typer.Option(help="how often the server reads the engine's status for its pages")] = 100,
    num_procs: Annotated[int, typer.Option(help="server processes sharing the port (0: one per core)")] = 1,
    ssl_certfile: Annotated[Path | None, typer.Option(help="serve HTTPS with this certificate (PEM); needs --ssl-keyfile")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="the certificate's private key (PEM)")] = None,
    login_lockout_s: Annotated[
        float, typer.Option(help="seconds a user name or address is locked out after too many failed logins")
    ] = 300.0,
) -> None:
    """Serve the dashboards (monitor, control, research, audit) behind a login."""
    from qlcore.ui.server import ServeConfig
    from qlcore.ui.server import serve as do_serve

    if not 1 <= port <= 65535:
        typer.secho(f"error: --port {port}: must be 1..65535", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if period_ms < 50:
        typer.secho(f"error: --period-ms {period_ms}: must be at least 50", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if (ssl_certfile is None) != (ssl_keyfile is None):
        typer.secho("error: --ssl-certfile and --ssl-keyfile go together", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    for option, path in (("--ssl-certfile", ssl_certfile), ("--ssl-keyfile", ssl_keyfile)):
        if path is not None and not path.is_file():
            typer.secho(f"error: {option} {path}: no such file", fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
    if login_lockout_s <= 0:
        typer.secho(f"error: --login-lockout-s {login_lockout_s:g}: must be above 0", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    config = ServeConfig(
        port=port, address=address, url=db, users_file=users_file, engine_id=engine_id,
        period_ms=period_ms, show=not no_browser, allow_origins=tuple(allow_origin or ()),
        num_procs=num_procs if num_procs > 0 else (os.cpu_count() or 1),
        ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, lockout_s=login_lockout_s,
    )
    do_serve(config, echo=lambda line: typer.echo(line, err=False))


def register(app: typer.Typer) -> None:
    """Add `qlcore serve` and `qlcore users` to the `qlcore` command."""
    app.command("serve")(serve)
    app.add_typer(users_app, name="users")
