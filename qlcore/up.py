"""`qlcore up` (what `make up` runs): the demo backtests, then the desk's services, until Ctrl-C.

1. The backtest demo (`qlcore demo`): every built-in strategy on the embedded real data, stored,
   replayed and verified, with an HTML report. Its runs are what the research page shows.
2. Services, each its own process, with its output prefixed by its name:
   - `qlcore engine --demo`: the paper engine, with demo strategies on the replayed real data;
   - `qlcore scheduler`: the approved notebook jobs (a demo job is approved on first run);
   - `qlcore serve`: the dashboards.
   Every command they send is signed and verified by the engine: before they start, the data folder
   gets its first admin (password in ``initial-admin-password``, signing key in ``keys/admin.key``,
   both 0600) unless it has users already; the dashboards and the scheduler register their own keys.
3. Ctrl-C (or SIGTERM) stops every service cleanly (SIGINT to each, then wait), and a service
   that dies takes the others down with a message, rather than leaving half a desk running.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Service:
    name: str
    args: list[str]
    process: subprocess.Popen[str] | None = None


def _qlcore() -> list[str]:
    script = Path(sys.executable).with_name("qlcore")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from qlcore.cli import main; main()"]


def _pump(service: Service, echo: Callable[[str], None]) -> None:
    assert service.process is not None and service.process.stdout is not None
    for line in service.process.stdout:
        echo(f"[{service.name:9s}] {line.rstrip()}")


def services(port: int, speed: float) -> list[Service]:
    q = _qlcore()
    return [
        Service("engine", [*q, "engine", "--demo", "--speed", f"{speed:g}"]),
        Service("scheduler", [*q, "scheduler", "--demo"]),
        Service("dashboard", [*q, "serve", "--port", str(port), "--no-browser"]),
    ]


def _limits_line() -> str:
    """The engine's limits: `qlcore engine` is started without --limits, so the default file's."""
    from qlcore.risk.defaults import engine_limits, summary

    settings, source = engine_limits(None)
    return f"{source.describe()} ({summary(settings)})"


def prepare_users(echo: Callable[[str], None] = print) -> None:
    """The first admin, with a signing key (and a key for an admin made before keys existed); then what a
    new user needs to know: where the password and the key are, how to add a user."""
    import getpass

    from qlcore.control.keys import issue_user_key
    from qlcore.control.users import (
        ADMIN_PASSWORD_FILE,
        USERS_FILE,
        UserStore,
        ensure_admin,
        user_key_file,
    )
    from qlcore.ops.demo import demo_identities
    from qlcore.store.db import connect, project_data_dir
    from qlcore.ui.actions import audit_user_changes

    users_file = project_data_dir() / USERS_FILE
    on_change = audit_user_changes(connect, f"os:{getpass.getuser()}")
    demo_identities(users_file, on_change=on_change)  # the admin, and the demo job's author and reviewer
    store = UserStore(users_file, on_change=on_change)
    ensure_admin(store)
    admin = store.users().get("admin")
    if admin is not None and not admin.key:
        issue_user_key(store, "admin")
    password_file = users_file.parent / ADMIN_PASSWORD_FILE
    echo("Users (in " + str(users_file) + "):")
    if admin is not None:
        if password_file.exists():
            echo(f"  login      admin, password in {password_file} (0600; change it: qlcore users passwd admin)")
        echo(f"  signing    admin's key: {user_key_file(users_file, 'admin')} "
             "(e.g. qlcore halt --user admin --reason ...)")
    echo("  new user   qlcore users add NAME --role viewer|trader|admin  (issues keys/NAME.key: hand it to them;")
    echo("             they sign with --user NAME, or QLCORE_KEY_FILE=their copy)")
    echo("")


def run_up(*, port: int = 5006, speed: float = 5.0, demo_backtests: bool = True, echo: Callable[[str], None] = print) -> int:
    if demo_backtests:
        from qlcore.demo import run_demo

        run_demo(echo=echo)
        echo("")
    prepare_users(echo)
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    running = services(port, speed)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for service in running:
        service.process = subprocess.Popen(
            service.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            env=env, start_new_session=True,  # our Ctrl-C is handled here, then passed on one by one
        )
        threading.Thread(target=_pump, args=(service, echo), daemon=True).start()
        time.sleep(0.5)
    echo("")
    echo("Quantum Leap is up:")
    echo("  engine     qlcore status | qlcore positions | qlcore strategy list | qlcore order list")
    echo(f"  limits     {_limits_line()}")
    echo(f"  dashboard  http://localhost:{port}/monitor  (control, research, audit beside it; login above)")
    echo("  jobs       qlcore jobs list --schedules-dir data/demo/schedules | qlcore jobs history | qlcore jobs alerts")
    echo("  stop       Ctrl-C")
    code = 0
    while not stop.is_set():
        for service in running:
            assert service.process is not None
            if service.process.poll() is not None:
                echo(f"{service.name} exited with code {service.process.returncode}: stopping the others")
                code = service.process.returncode or 1
                stop.set()
        stop.wait(0.5)
    for service in running:
        if service.process is not None and service.process.poll() is None:
            service.process.send_signal(signal.SIGINT)
    for service in running:
        if service.process is None:
            continue
        try:
            service.process.wait(20)
        except subprocess.TimeoutExpired:
            echo(f"{service.name} did not stop within 20 s: killing it")
            service.process.kill()
            service.process.wait()
    echo("stopped.")
    return code
