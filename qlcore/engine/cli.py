"""`qlcore engine`, and the commands that talk to a running engine through the command table.

`qlcore engine` runs the paper engine in the foreground (Ctrl-C stops it cleanly). The others write
one command each (`strategy deploy|pause|resume|stop`, `order submit|cancel`, `flatten`, `halt`,
`resume-trading`), wait for the engine's outcome and print it: exit 0 when accepted, 1 when refused
(the reason is printed; also when the sender is over its bound of waiting commands or commands a
second, and nothing is queued), 3 when no engine took it in time. `strategy list`, `order list`,
`positions` and `status` read the engine's status snapshot. Every command is signed by its sender
(`--user`, else `QLCORE_USER`, else the login name) with that user's key (``keys/<user>.key`` beside
the users file, or ``QLCORE_KEY_FILE``); without it nothing is sent (exit 2). The engine verifies
the signature and the role against its users file.
"""
from __future__ import annotations

import getpass
import json
import os
import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

strategy_app = typer.Typer(help="Deploy, pause, resume, stop and list strategies in the running engine.", no_args_is_help=True)
order_app = typer.Typer(help="Submit, cancel and list orders in the running engine.", no_args_is_help=True)

Db = Annotated[str | None, typer.Option(help="store URL (default: QLCORE_DB_URL or data/qlcore.db)")]
EngineId = Annotated[str, typer.Option("--engine-id", help="which engine")]
User = Annotated[str | None, typer.Option("--user", help="whose signing key signs the command (default: QLCORE_USER or login name)")]
UsersFile = Annotated[
    Path | None, typer.Option("--users-file", help="users file (default: users.toml under the data folder); "
                              "the key is keys/<user>.key beside it, or QLCORE_KEY_FILE")
]
Wait = Annotated[float, typer.Option(help="seconds to wait for the engine's outcome (0: do not wait)")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]


def resolve_user(user: str | None) -> str:
    return user or os.environ.get("QLCORE_USER") or getpass.getuser()


def _send(kind: str, payload: dict[str, Any], *, user: str | None, users_file: Path | None, db: str | None,
          engine_id: str, wait: float) -> None:
    from qlcore.audit.log import AuditLog
    from qlcore.audit.recorder import AuditRecorder
    from qlcore.cli import UserError
    from qlcore.control.commands import CommandError, CommandLimitError, CommandQueue
    from qlcore.control.identity import CredentialError
    from qlcore.control.keys import user_signing_key
    from qlcore.control.users import USERS_FILE
    from qlcore.store.db import project_data_dir

    # the command is signed with the sender's own key: naming someone else without their key fails here,
    # before anything is stored (the engine would refuse it anyway)
    name = resolve_user(user)
    users_file = users_file or project_data_dir() / USERS_FILE
    try:
        key = user_signing_key(users_file, name)
    except CredentialError as exc:
        raise UserError(f"cannot sign as {name!r}: {exc}") from None
    _check_key_is_theirs(key, users_file)
    # a command refused at submission (malformed, or over its sender's bounds) is audited here
    queue = CommandQueue(db, audit=AuditRecorder(AuditLog(db, conflict_retries=20)), signer=key)
    try:
        command_id = queue.submit(name, kind, payload, target=engine_id)
    except CommandError as exc:
        raise UserError(f"malformed command: {exc}") from None
    except CommandLimitError as exc:
        typer.secho(f"command refused, not queued: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if wait <= 0:
        typer.echo(f"command {command_id} queued")
        return
    try:
        outcome = queue.wait_for(command_id, wait)
    except TimeoutError:
        typer.secho(
            f"command {command_id} queued, but no engine {engine_id!r} took it within {wait:g} s "
            "(is `qlcore engine` running?)",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(3) from None
    if outcome.status == "accepted":
        typer.secho(f"command {command_id} accepted: {outcome.reason}", fg=typer.colors.GREEN)
        return
    typer.secho(f"command {command_id} refused: {outcome.reason}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _check_key_is_theirs(key: Any, users_file: Path) -> None:
    """`UserError` when the users file (where readable: it may be the desk operator's alone) holds another
    public key for the user than the one loaded: the engine would refuse the command anyway."""
    from qlcore.cli import UserError
    from qlcore.control.users import AuthError, UserStore

    try:
        known = UserStore(users_file).users().get(key.name)
    except (OSError, AuthError):
        return
    if known is not None and known.key and known.key != key.public_hex:
        raise UserError(f"the key loaded is not {key.name!r}'s signing key (not the public key {users_file} names "
                        f"for {key.name!r}); QLCORE_KEY_FILE names a key kept elsewhere")


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    from qlcore.cli import _parse_params

    return _parse_params(items or [], option)


def _snapshot(db: str | None, engine_id: str) -> tuple[Any, dict[str, Any]]:
    from qlcore.cli import UserError
    from qlcore.engine.status import read_status

    rows = read_status(db, engine_id)
    if not rows:
        raise UserError(f"no engine {engine_id!r} has run on this store; start one with `qlcore engine`")
    return rows[0], rows[0].snapshot


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        typer.echo("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        typer.echo("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, str) and _numeric(value) and "." in value:
        return f"{Decimal(value):,.2f}"
    if isinstance(value, str) and _numeric(value):
        return f"{Decimal(value):,}"
    return str(value)


# --- the engine ----------------------------------------------------------------------------------
def engine_cmd(
    engine_id: EngineId = "engine",
    feed: Annotated[str, typer.Option(help="replay (the embedded real daily bars) or synthetic (1-second bars)")] = "replay",
    symbols: Annotated[str, typer.Option(help="comma-separated symbols")] = "AAPL,GOOG,IBM,MSFT",
    speed: Annotated[float, typer.Option(help="feed steps per second (replay: trading days per second)")] = 20.0,
    start: Annotated[str | None, typer.Option(help="first date of the replayed data")] = None,
    cash: Annotated[str, typer.Option(help="initial cash of a new account")] = "1000000",
    risk_config: Annotated[
        Path | None,
        typer.Option("--limits", "--risk-config",
                     help="risk limits TOML (default: the default limits file, qlcore/risk/default_limits.toml)"),
    ] = None,
    no_limits: Annotated[
        bool, typer.Option("--no-limits", help="run with no limits at all: a paper engine only, with --admin-approval")
    ] = False,
    admin_approval: Annotated[
        str | None,
        typer.Option("--admin-approval", help="the admin's reason for --no-limits (recorded in the audit log)"),
    ] = None,
    admin: Annotated[
        str | None,
        typer.Option("--admin", help="the admin giving --admin-approval, proven by their signing key "
                     "(default: QLCORE_USER, else your login name)"),
    ] = None,
    latency_ms: Annotated[float, typer.Option(help="venue latency in ms (market time)")] = 0.0,
    participation: Annotated[float, typer.Option(help="share of bar volume an order may fill")] = 1.0,
    fee_bps: Annotated[str, typer.Option(help="fee in basis points of notional")] = "0",
    min_fee: Annotated[str, typer.Option(help="minimum fee of an order")] = "0",
    slippage_bps: Annotated[str, typer.Option(help="slippage in basis points on market and stop fills")] = "0",
    reject_symbols: Annotated[str, typer.Option(help="comma-separated symbols the venue rejects (testing)")] = "",
    fill_on_arrival: Annotated[
        bool,
        typer.Option("--fill-on-arrival/--next-bar-fills",
                     help="fill on arrival at the last close, or at the next bar's open (the backtest's convention)"),
    ] = False,
    demo: Annotated[bool, typer.Option(help="deploy the demo strategies into a new engine")] = False,
    exit_when_done: Annotated[bool, typer.Option(help="stop when the feed is exhausted")] = False,
    seed: Annotated[int, typer.Option(help="seed of the synthetic feed")] = 0,
    venue_path: Annotated[Path | None, typer.Option(help="the paper venue's ledger file")] = None,
    strategy_budget_s: Annotated[
        float, typer.Option(help="longest one on_bar may take, in seconds, before its strategy FAILS (0: no budget)")
    ] = 5.0,
    flatten_failed: Annotated[
        bool, typer.Option("--flatten-failed", help="also close the positions of a strategy that FAILED")
    ] = False,
    feed_stale_s: Annotated[float, typer.Option(help="wall seconds without a bar before an alert")] = 5.0,
    feed_reduce_s: Annotated[float, typer.Option(help="wall seconds without a bar before the account goes REDUCING")] = 30.0,
    feed_calendar: Annotated[
        str | None, typer.Option(help="count silence only in this exchange's sessions (e.g. XNYS; a live feed)")
    ] = None,
    users_file: Annotated[
        Path | None, typer.Option("--users-file", help="whose signed commands are believed, with which role "
                                  "(default: users.toml under the data folder)")
    ] = None,
    db: Db = None,
) -> None:
    """Run the paper engine in the foreground until Ctrl-C (state rebuilt and reconciled at start)."""
    import faulthandler
    import logging

    from qlcore.cli import UserError
    from qlcore.engine.service import EngineConfig, EngineService
    from qlcore.engine.status import EngineAlreadyRunning
    from qlcore.store.errors import safe_url

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faulthandler.enable()  # a fatal signal (SIGBUS, SIGSEGV) leaves the Python stack in the engine's log
    try:
        config = EngineConfig(
            engine_id=engine_id,
            url=db,
            feed=feed,
            symbols=tuple(s.strip().upper() for s in symbols.split(",") if s.strip()),
            speed=speed,
            start=start,
            initial_cash=Decimal(cash),
            risk_config=risk_config,
            no_limits=no_limits,
            admin_approval=admin_approval,
            admin=admin,
            latency_ms=latency_ms,
            participation=participation,
            fee_bps=Decimal(fee_bps),
            min_fee=Decimal(min_fee),
            slippage_bps=Decimal(slippage_bps),
            reject_symbols=frozenset(s.strip().upper() for s in reject_symbols.split(",") if s.strip()),
            fill_on_arrival=fill_on_arrival,
            demo=demo,
            exit_when_done=exit_when_done,
            seed=seed,
            venue_path=venue_path,
            strategy_bar_budget_s=strategy_budget_s or None,
            flatten_failed=flatten_failed,
            feed_stale_s=feed_stale_s,
            feed_reduce_s=feed_reduce_s,
            feed_calendar=feed_calendar,
            users_file=users_file,
        )
        service = EngineService(config)
        service.install_signal_handlers()
        service.start()
    except (ValueError, EngineAlreadyRunning) as exc:
        raise UserError(str(exc)) from None
    rec = service.reconciliation
    typer.secho(
        f"engine {engine_id!r} {service.state} (paper, {feed} feed at {speed:g} steps/s, store {safe_url(service.url)})",
        fg=typer.colors.GREEN if service.state == "running" else typer.colors.RED,
        bold=True,
    )
    typer.echo(f"  {rec.summary()}")
    typer.echo(f"  limits:    {service.limits_source.describe()}")
    typer.echo("  watch it:  qlcore status   qlcore positions   qlcore strategy list   qlcore order list")
    typer.echo("  stop it:   Ctrl-C")
    service.run()
    typer.echo(f"engine {engine_id!r} stopped ({service._stop_reason})")


def status_cmd(engine_id: EngineId = "engine", as_json: AsJson = False, db: Db = None) -> None:
    """The engine's state, heartbeat, account and activity."""
    row, snap = _snapshot(db, engine_id)
    age = row.heartbeat_age_s()
    if as_json:
        typer.echo(json.dumps({**snap, "state": row.state, "heartbeat_age_s": round(age, 3), "alive": row.alive()}, indent=2))
        return
    alive = row.alive()
    colour = typer.colors.GREEN if alive and row.state == "running" else typer.colors.RED
    typer.secho(
        f"engine {engine_id}: {row.state}{'' if alive else ' (NOT RUNNING)'}  pid {row.pid} on {row.host}  "
        f"heartbeat {age:.1f} s ago",
        fg=colour,
        bold=True,
    )
    acct = snap.get("account", {})
    if acct:
        typer.echo(f"  trading     {acct['mode']}" + (f" ({acct['mode_reason']})" if acct.get("mode_reason") else ""))
        typer.echo(
            f"  equity      {_cell(acct['equity'])}   cash {_cell(acct['cash'])}   P&L today {_cell(acct['pnl_today'])}"
        )
        typer.echo(f"  exposure    gross {_cell(acct['gross_exposure'])}   net {_cell(acct['net_exposure'])}")
    feed = snap.get("feed", {})
    if feed:
        market = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(snap["clock_ts"] / 1e9))
        typer.echo(
            f"  feed        {feed['source']}  market time {market}  bars {feed['bars']:,}  "
            f"quarantined {feed['quarantined']}" + ("  (exhausted)" if feed.get("exhausted") else "")
            + (f"  BEHIND by {feed['behind_s']:.1f} s" if feed.get("behind_s", 0) >= 1 else "")
        )
    strategies = snap.get("strategies", [])
    states: dict[str, int] = {}
    for s in strategies:
        states[s["state"]] = states.get(s["state"], 0) + 1
    typer.echo(f"  strategies  {len(strategies)} " + " ".join(f"{k.lower()}={v}" for k, v in sorted(states.items())))
    open_orders = sum(1 for o in snap.get("orders", []) if o["status"] in _OPEN)
    typer.echo(f"  orders      {open_orders} open   venue working {snap.get('broker', {}).get('working_orders', 0)}")
    fills = snap.get("broker", {}).get("fills")
    if fills:
        differs = fills["differs_from_backtest"]
        typer.echo(f"  fills       {fills['convention']}, fee {fills['fee_bps']} bps, slippage {fills['slippage_bps']} bps"
                   + ("; differs from the backtest: " + "; ".join(differs) if differs else " (as the backtest)"))
    typer.echo(f"  commands    {snap.get('commands', {}).get('processed', 0)} processed")
    if snap.get("reconciliation"):
        typer.echo(f"  recovery    {snap['reconciliation']['summary']}")
    for alert in snap.get("alerts", [])[:5]:
        typer.secho(f"  alert       [{alert['level']}] {alert['source']}: {alert['message']}", fg=typer.colors.YELLOW)


_OPEN = {"INITIALIZED", "SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL"}


def positions_cmd(
    engine_id: EngineId = "engine",
    by: Annotated[str, typer.Option(help="strategy, instrument or account")] = "strategy",
    as_json: AsJson = False,
    db: Db = None,
) -> None:
    """Positions and P&L from the running engine, by strategy, instrument or for the whole account."""
    from qlcore.cli import UserError

    _, snap = _snapshot(db, engine_id)
    rows = snap.get("positions", [])
    if by == "instrument":
        rows = snap.get("positions_by_instrument", [])
    elif by == "account":
        rows = [snap.get("account", {})]
    elif by != "strategy":
        raise UserError(f"--by {by!r}: choose strategy, instrument or account")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    columns = {
        "strategy": ["strategy_id", "symbol", "quantity", "avg_price", "mark", "market_value", "unrealized_pnl", "realized_pnl"],
        "instrument": ["symbol", "quantity", "market_value", "unrealized_pnl", "realized_pnl"],
        "account": ["equity", "cash", "realized_pnl", "unrealized_pnl", "fees", "gross_exposure", "net_exposure", "buying_power"],
    }[by]
    _table(rows, columns)


def flatten_cmd(
    strategy: Annotated[str | None, typer.Option("--strategy", help="only this strategy")] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", help="only this instrument")] = None,
    user: User = None,
    users_file: UsersFile = None,
    wait: Wait = 5.0,
    engine_id: EngineId = "engine",
    db: Db = None,
) -> None:
    """Cancel open orders and close positions (all, or of one strategy and/or instrument)."""
    payload = {k: v for k, v in (("strategy_id", strategy), ("symbol", symbol and symbol.upper())) if v}
    _send("flatten", payload, user=user, users_file=users_file, db=db, engine_id=engine_id, wait=wait)


def halt_cmd(
    reason: Annotated[str, typer.Option("--reason", help="why (recorded with your name)")],
    flatten: Annotated[bool, typer.Option("--flatten", help="also close every position at market")] = False,
    user: User = None,
    users_file: UsersFile = None,
    wait: Wait = 5.0,
    engine_id: EngineId = "engine",
    db: Db = None,
) -> None:
    """EMERGENCY STOP: cancel every open order and halt trading (cancels, and flattening, still pass)."""
    payload: dict[str, Any] = {"reason": reason, **({"flatten": True} if flatten else {})}
    _send("halt", payload, user=user, users_file=users_file, db=db, engine_id=engine_id, wait=wait)


def resume_trading_cmd(
    reason: Annotated[str, typer.Option("--reason", help="why")] = "",
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="only this strategy (halted at its scope, or disabled by runaway protection)")
    ] = None,
    user: User = None,
    users_file: UsersFile = None,
    wait: Wait = 5.0,
    engine_id: EngineId = "engine",
    db: Db = None,
) -> None:
    """Return a halted account, or one strategy, to ACTIVE (authorised users only)."""
    payload = {k: v for k, v in (("reason", reason), ("strategy_id", strategy)) if v}
    _send("resume_trading", payload, user=user, users_file=users_file, db=db, engine_id=engine_id, wait=wait)


# --- strategies ----------------------------------------------------------------------------------
@strategy_app.command("deploy")
def strategy_deploy(
    strategy: Annotated[str, typer.Argument(help="built-in name (see `qlcore strategies`) or module:Class")],
    strategy_id: Annotated[str, typer.Option("--id", help="the deployment's id")],
    symbols: Annotated[str | None, typer.Option(help="comma-separated symbols (default: all of the engine's)")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="parameter NAME=VALUE (repeatable)")] = None,
    capital: Annotated[str | None, typer.Option(help="capital allocated to it")] = None,
    limit: Annotated[list[str] | None, typer.Option("--limit", help="per-strategy limit NAME=VALUE (repeatable)")] = None,
    user: User = None,
    users_file: UsersFile = None,
    wait: Wait = 5.0,
    engine_id: EngineId = "engine",
    db: Db = None,
) -> None:
    """Deploy a strategy into the running engine (it starts on the next bar)."""
    payload: dict[str, Any] = {"strategy_id": strategy_id, "strategy": strategy, "params": _pairs(param, "--param")}
    if symbols:
        payload["symbols"] = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    if capital:
        payload["capital"] = capital
    if limit:
        payload["limits"] = _pairs(limit, "--limit")
    _send("strategy.deploy", payload, user=user, users_file=users_file, db=db, engine_id=engine_id, wait=wait)


@strategy_app.command("pause")
def strategy_pause(
    strategy_id: Annotated[str, typer.Argument(help="the deployment's id")],
    cancel_orders: Annotated[bool, typer.Option("--cancel-orders", help="also cancel its open orders")] = False,
    user: User = None,
    users_file: UsersFile = None,
    wait: Wait = 5.0,
    engine_id: EngineId = "engine",
    db: Db = None,
) -> None:
    """No more bars or new orders for the strategy; open orders stay unless --cancel-orders."""
    _send("strategy.pause", {"strategy_id": strategy_id, "cancel_open_orders": cancel_orders}, user=user, users_file=users_file, db=db, engine_id=engine_id, wait=wait)


@strategy_app.command("resume")
def strategy_resume(
    strategy_id: Annotated[str, typer.Argument(help="the deployment's id")],
    user: User = None,
    users_file: UsersFile = None,
    wait: Wait = 5.0,
    engine_id: EngineId = "engine",
    db: Db = None,
) -> None:
    """Bars and orders again for a paused strategy."""
    _send("strategy.resume", {"strategy_id": strategy_id}, user=user, users_file=users_file, db=db, engine_id=engine_id, wait=wait)


@strategy_app.command("stop")
def strategy_stop(
    strategy_id: Annotated[str, typer.Argument(help="the deployment's id")],
    flatten: Annotated[bool, typer.Option("--flatten", help="also close its positions")] = False,
    user: User = None,
    users_file: UsersFile = None,
    wait: Wait = 5.0,
    engine_id: EngineId = "engine",
    db: Db = None,
) -> None:
    """Stop a strategy for good (its open orders are cancelled)."""
    _send("strategy.stop", {"strategy_id": strategy_id, "flatten": flatten}, user=user, users_file=users_file, db=db, engine_id=engine_id, wait=wait)


@strategy_app.command("list")
def strategy_list(engine_id: EngineId = "engine", as_json: AsJson = False, db: Db = None) -> None:
    """Deployed strategies with their state and live statistics."""
    _, snap = _snapshot(db, engine_id)
    rows = snap.get("strategies", [])
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _table(rows, ["strategy_id", "strategy", "state", "symbols", "capital", "pnl", "exposure", "trades", "sharpe", "max_drawdown", "open_orders"])


# --- orders --------------------------------------------------------------------------------------
@order_app.command("submit")
def order_submit(
    strategy_id: Annotated[str, typer.Option("--strategy", help="the strategy (or book) the order belongs to")],
    symbol: Annotated[str, typer.Option("--symbol")],
    side: Annotated[str, typer.Option("--side", help="BUY or SELL")],
    quantity: Annotated[str, typer.Option("--qty", "--quantity")],
    order_type: Annotated[str, typer.Option("--type", help="MARKET, LIMIT, STOP or STOP_LIMIT")] = "MARKET",
    price: Annotated[str | None, typer.Option("--price", help="limit price")] = None,
    trigger_price: Annotated[str | None, typer.Option("--trigger", help="stop trigger price")] = None,
    tif: Annotated[str, typer.Option("--tif", help="DAY, GTC, IOC or FOK")] = "GTC",
    user: User = None,
    users_file: UsersFile = None,
    wait: Wait = 5.0,
    engine_id: EngineId = "engine",
    db: Db = None,
) -> None:
    """A manual order: checked by the engine's risk rules like any other."""
    payload: dict[str, Any] = {
        "strategy_id": strategy_id,
        "symbol": symbol.upper(),
        "side": side.upper(),
        "quantity": quantity,
        "order_type": order_type.upper(),
        "time_in_force": tif.upper(),
    }
    if price is not None:
        payload["price"] = price
    if trigger_price is not None:
        payload["trigger_price"] = trigger_price
    _send("order.submit", payload, user=user, users_file=users_file, db=db, engine_id=engine_id, wait=wait)


@order_app.command("cancel")
def order_cancel(
    order_id: Annotated[str, typer.Argument(help="the client order id")],
    user: User = None,
    users_file: UsersFile = None,
    wait: Wait = 5.0,
    engine_id: EngineId = "engine",
    db: Db = None,
) -> None:
    """Ask the venue to cancel an open order."""
    _send("order.cancel", {"order_id": order_id}, user=user, users_file=users_file, db=db, engine_id=engine_id, wait=wait)


@order_app.command("list")
def order_list(
    open_only: Annotated[bool, typer.Option("--open", help="only open orders")] = False,
    engine_id: EngineId = "engine",
    as_json: AsJson = False,
    db: Db = None,
) -> None:
    """Recent and open orders, newest first."""
    _, snap = _snapshot(db, engine_id)
    rows = [o for o in snap.get("orders", []) if not open_only or o["status"] in _OPEN]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _table(rows, ["order_id", "strategy_id", "symbol", "side", "order_type", "quantity", "filled", "price", "status"])


def register(app: typer.Typer) -> None:
    app.command("engine")(engine_cmd)
    app.command("status")(status_cmd)
    app.command("positions")(positions_cmd)
    app.command("flatten")(flatten_cmd)
    app.command("halt")(halt_cmd)
    app.command("resume-trading")(resume_trading_cmd)
    app.add_typer(strategy_app, name="strategy")
    app.add_typer(order_app, name="order")
