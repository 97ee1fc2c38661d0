"""The `qlcore` command."""
from __future__ import annotations

import runpy
import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Quantum Leap: backtest, replay and inspect trading strategies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Market data: list and check data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

from qlcore.audit.cli import audit_app  # noqa: E402 - both load their contents on first use
from qlcore.audit.report_cli import report_app  # noqa: E402
from qlcore.risk.cli import risk_app  # noqa: E402

app.add_typer(audit_app, name="audit")
app.add_typer(report_app, name="report")
app.add_typer(risk_app, name="risk")

from qlcore.ops.cli import register as register_ops  # noqa: E402 - loads its contents on first use

register_ops(app)  # qlcore submit | approve | reject | revoke | submissions

from qlcore.engine.cli import register as register_engine  # noqa: E402

register_engine(app)  # qlcore engine | status | positions | flatten | halt | resume-trading | strategy | order

from qlcore.ui.cli import register as register_ui  # noqa: E402 - loads Panel only when serving

register_ui(app)  # qlcore serve | users

ROOT = Path(__file__).resolve().parents[1]


# options shared by the commands that run a strategy on bars (backtest, parity)
SymbolsOption = Annotated[str | None, typer.Option(help="comma-separated embedded symbols, e.g. AAPL,MSFT")]
DataFilesOption = Annotated[
    list[Path] | None, typer.Option("--data-file", "-f", help="CSV or Parquet bar file (repeatable)")
]
ParamsOption = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="strategy parameter NAME=VALUE (repeatable)")
]
StartOption = Annotated[str | None, typer.Option(help="first date, e.g. 2005-01-01")]
EndOption = Annotated[str | None, typer.Option(help="last date")]
CashOption = Annotated[str, typer.Option(help="initial cash")]
FeeBpsOption = Annotated[str, typer.Option(help="fee in basis points of notional (10 = 0.1%)")]


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _known_errors() -> tuple[type[BaseException], ...]:
    from qlcore.data import DataValidationError, UnknownSymbolError
    from qlcore.engine.config import ConfigError
    from qlcore.events.store import CorruptEventLog
    from qlcore.store.runs import UnknownRunError
    from qlcore.strategies import InvalidParameterError, UnknownParameterError, UnknownStrategyError

    return (
        UserError,
        DataValidationError,
        UnknownSymbolError,
        ConfigError,
        CorruptEventLog,
        UnknownRunError,
        InvalidParameterError,
        UnknownParameterError,
        UnknownStrategyError,
        FileNotFoundError,
    )


def _parse_params(items: list[str], option: str = "--param") -> dict[str, str]:
    """NAME=VALUE options as a dict; a malformed one is a `UserError` naming the option."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option} {item!r}: expected NAME=VALUE")
        params[key.strip()] = value.strip()
    return params


def _load_frames(symbols: str | None, data_files: list[Path], start: str | None, end: str | None) -> dict:
    from qlcore.data import load_csv, load_parquet, load_sample

    frames = {}
    for sym in [s.strip() for s in (symbols or "").split(",") if s.strip()]:
        frames[sym.upper()] = load_sample(sym.upper())
    for path in data_files:
        if not path.exists():
            raise FileNotFoundError(f"data file not found: {path}")
        df = load_parquet(path) if path.suffix == ".parquet" else load_csv(path)
        frames[df.attrs["symbol"]] = df
    if not frames:
        raise UserError("no data: give --symbols (embedded sample: AAPL, GOOG, IBM, MSFT) or --data-file PATH")
    for sym, df in list(frames.items()):
        attrs = dict(df.attrs)
        cut = df.loc[start:end] if (start or end) else df
        if cut.empty:
            raise UserError(f"{sym}: no bars between {start or 'the start'} and {end or 'the end'}")
        cut.attrs.update(attrs)
        frames[sym] = cut
    return frames


@app.command()
def backtest(
    strategy: Annotated[str, typer.Option("--strategy", "-s", help="built-in name (see `qlcore strategies`) or module:Class")],
    symbols: SymbolsOption = None,
    data_file: DataFilesOption = None,
    param: ParamsOption = None,
    start: StartOption = None,
    end: EndOption = None,
    cash: CashOption = "100000",
    fee_bps: FeeBpsOption = "0",
    min_fee: Annotated[str, typer.Option(help="minimum fee per order")] = "0",
    slippage_bps: Annotated[str, typer.Option(help="slippage in basis points on market and stop fills")] = "0",
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    db: Annotated[str | None, typer.Option(help="store URL (default: QLCORE_DB_URL or data/qlcore.db)")] = None,
    store: Annotated[bool, typer.Option(help="record events and the run in the store")] = True,
    report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Run a backtest and print its metrics; events and the run record go to the store."""
    from qlcore.engine import BacktestConfig, BacktestEngine
    from qlcore.events import EventStore
    from qlcore.store.db import connect
    from qlcore.store.runs import save_run
    from qlcore.strategies import create_strategy

    strat = create_strategy(strategy, _parse_params(param or []))
    frames = _load_frames(symbols, data_file or [], start, end)
    config = BacktestConfig.from_mapping(
        {"initial_cash": cash, "fee_bps": fee_bps, "min_fee": min_fee, "slippage_bps": slippage_bps}
    )
    engine = connect(db) if store else None
    eng = BacktestEngine(config, store=EventStore(engine=engine) if engine is not None else None)
    eng.add_strategy(strat)
    total = sum(len(df) for df in frames.values())
    result = eng.run(frames, progress=progress and not as_json and total >= 200_000 and sys.stderr.isatty())
    if engine is not None:
        save_run(engine, result)
    if report is not None:
        from qlcore.portfolio.report import write_report

        write_report(report, [(result.title, result._repr_html_())])
    if as_json:
        typer.echo(result.to_json())
        return
    _print_result(result)
    if engine is not None:
        typer.echo(f"run id: {result.run_id}   (verify: qlcore replay --verify {result.run_id})")


def _print_result(result: Any) -> None:
    m = result.metrics
    typer.secho(result.title, bold=True)
    params = ", ".join(f"{k}={v}" for k, v in result.params.items())
    rows = [
        ("params", params),
        ("period", f"{m.start:%Y-%m-%d} .. {m.end:%Y-%m-%d} ({result.bars:,} bars)"),
        ("final equity", f"{result.final_equity:,.2f}"),
        ("total return", f"{m.total_return:.2%}"),
        ("CAGR", f"{m.cagr:.2%}"),
        ("sharpe / sortino", f"{m.sharpe:.2f} / {m.sortino:.2f}"),
        ("max drawdown", f"{m.max_drawdown:.2%} (longest {m.max_drawdown_duration.days} days)"),
        ("trades / win rate", f"{m.n_trades} / {m.win_rate:.1%}"),
        ("fills / fees", f"{len(result.fills)} / {sum(result.fills['fee'], Decimal(0)):,.2f}"),
        ("state hash", result.state_hash[:16]),
    ]
    for label, value in rows:
        typer.echo(f"  {label:<18} {value}")
    if result.ruined_at is not None:
        typer.secho(f"  equity fell to zero or below on {result.ruined_at}: metrics cover the run until then", fg=typer.colors.YELLOW)


@app.command()
def replay(
    run_id: Annotated[str, typer.Argument(help="run id (see `qlcore runs`), or an engine's stream (engine-<id>) or id")],
    verify: Annotated[bool, typer.Option("--verify", help="fail unless the replayed state hash equals the recorded one")] = False,
    db: Annotated[str | None, typer.Option(help="store URL")] = None,
) -> None:
    """Rebuild a run's (or an engine's) orders, positions and account from its stored events.

    An engine records its state hash as its last event when it stops cleanly; while it runs, or
    after a crash, there is none at the end, and --verify checks the log's integrity (every event
    read in sequence with its checksum, and applied) and prints the replayed hash.
    """
    from qlcore.events import EventStore
    from qlcore.events.replay import replay as do_replay
    from qlcore.store.db import connect
    from qlcore.store.runs import UnknownRunError, get_run

    engine = connect(db)
    try:
        record = get_run(engine, run_id)
    except UnknownRunError:
        record = None
    store = EventStore(engine=engine)
    try:
        result = do_replay(store, run_id)
    except LookupError as exc:
        if record is not None or run_id.startswith("engine-"):
            raise UserError(str(exc).strip("'\"")) from None
        try:  # an engine id given for its stream
            result = do_replay(store, f"engine-{run_id}")
        except LookupError:
            raise UserError(str(exc).strip("'\"")) from None
        run_id = result.stream
    engine_stream = record is None and run_id.startswith("engine-")
    state = result.state
    replayed = result.state_hash
    typer.echo(f"run {run_id}: {result.events:,} events replayed")
    typer.echo(f"  orders {len(state.orders)}, positions {sum(1 for p in state.positions.values() if p.quantity)} open")
    typer.echo(f"  cash {state.cash:,.2f}, equity {state.equity():,.2f}")
    typer.echo(f"  replayed state hash  {replayed}")
    typer.echo(f"  recorded (event log) {result.recorded_hash or 'none'}")
    if record is not None:
        typer.echo(f"  recorded (run table) {record.state_hash}")
    if verify and engine_stream and result.recorded_hash is None:
        typer.secho(f"verified: the log is intact ({result.events:,} events in sequence, checksums good, all applied); "
                    "no state hash follows them (the engine is running, or did not stop cleanly): "
                    f"replayed state hash {replayed}", fg=typer.colors.GREEN)
        return
    if verify:
        ok = result.recorded_hash == replayed and (record is None or record.state_hash == replayed)
        if record is not None and record.final_equity is not None and Decimal(record.final_equity) != state.equity():
            ok = False
            typer.echo(f"  final equity differs: run table {record.final_equity}, replay {state.equity()}")
        if not ok:
            typer.secho("VERIFY FAILED: replayed state differs from the recorded run", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        typer.secho("verified: replay reproduces the recorded state exactly", fg=typer.colors.GREEN)


@app.command()
def runs(
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 20,
    db: Annotated[str | None, typer.Option(help="store URL")] = None,
) -> None:
    """List stored backtest runs."""
    from qlcore.store.db import connect
    from qlcore.store.runs import list_runs

    records = list_runs(connect(db), limit)
    if not records:
        typer.echo("no runs stored yet: try `qlcore backtest --strategy sma_cross --symbols AAPL`")
        return
    for r in records:
        names = ",".join(s["id"] for s in r.strategies)
        syms = ",".join(d["symbol"] for d in r.data)
        ret = (r.metrics or {}).get("total_return")
        ret_s = f"{ret:8.2%}" if isinstance(ret, (int, float)) else "     n/a"
        typer.echo(f"{r.run_id}  {r.created_at}  {names:<16} {syms:<20} equity {Decimal(r.final_equity or 0):>14,.2f} {ret_s}")


@app.command()
def strategies() -> None:
    """List the built-in strategies and their parameters."""
    from qlcore.strategies import BUILTINS

    for name, cls in sorted(BUILTINS.items()):
        typer.secho(f"{name}: {cls.description}", bold=True)
        for pname, p in cls.params.items():
            typer.echo(f"    {pname:<10} default {p.default!s:<8} {p.help}")


@data_app.command("list")
def data_list(
    directory: Annotated[list[Path] | None, typer.Option("--dir", help="extra folder to scan (repeatable)")] = None,
) -> None:
    """List the embedded samples and the bar files under data/ and ../shared/data."""
    from qlcore.data import list_datasets
    from qlcore.store.db import project_data_dir

    dirs = [project_data_dir(), ROOT.parent / "shared" / "data", *(directory or [])]
    df = list_datasets([d for d in dirs if d.is_dir()])
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        typer.echo(df.to_string(index=False))


@data_app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="a CSV or Parquet bar file")],
    repair: Annotated[bool, typer.Option(help="apply the well-defined repairs (sort, dedupe, clip, merge)")] = False,
    timestamp_unit: Annotated[str | None, typer.Option(
        help="the timestamp column is epoch numbers in this unit: s, ms, us or ns (UTC)")] = None,
    date_format: Annotated[str | None, typer.Option(help="strftime format of the timestamps, e.g. '%d/%m/%Y %H:%M'")] = None,
    dayfirst: Annotated[bool, typer.Option("--dayfirst", help="dates write the day first: 31/01/2006")] = False,
    delimiter: Annotated[str, typer.Option(help="field separator: ',', ';', '|' or 'tab'")] = ",",
    tz: Annotated[str | None, typer.Option(help="the zone naive timestamps are in, e.g. UTC or America/New_York")] = None,
    exchange_tz: Annotated[str | None, typer.Option(
        help="the exchange's zone: bar times are converted to it (default: --tz)")] = None,
    adjusted: Annotated[bool, typer.Option("--adjusted", help="trade adjusted prices: scale by Adj Close / Close")] = False,
    calendar: Annotated[str, typer.Option(
        help="exchange calendar to find missing sessions on (exchange_calendars name), or 'none'")] = "XNYS",
    hole_sessions: Annotated[int, typer.Option(help="a gap of more sessions than this is a hole")] = 5,
    allow_gaps: Annotated[bool, typer.Option("--allow-gaps", help="report calendar gaps but exit 0")] = False,
) -> None:
    """Validate a bar file and print its quality report; exit 2 if it has issues (bad input),
    1 if it loads but misses sessions of the calendar (unless --allow-gaps)."""
    from qlcore.data import inspect_file
    from qlcore.data.errors import DataOptionError
    from qlcore.data.options import CsvOptions

    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        options = CsvOptions(timestamp_unit=timestamp_unit, date_format=date_format, dayfirst=dayfirst,
                             delimiter="\t" if delimiter.lower() in ("tab", "\\t") else delimiter,
                             tz=tz, exchange_tz=exchange_tz, adjusted=adjusted)
        report = inspect_file(path, repair=repair, options=options,
                              calendar=None if calendar.lower() == "none" else calendar, hole_sessions=hole_sessions)
    except (DataOptionError, ValueError) as exc:  # a bad option, or not a .csv or .parquet name
        raise UserError(str(exc)) from None
    typer.echo(str(report))
    if report.issues:
        first = report.issues[0]
        typer.secho(f"error: {first}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if not report.complete and report.calendar is not None:
        gaps = report.calendar
        typer.secho(f"error: {path}: {gaps.summary()} (first: {gaps.gaps[0]})"
                    + ("; allowed by --allow-gaps" if allow_gaps else ""), fg=typer.colors.RED, err=True)
        if not allow_gaps:
            raise typer.Exit(1)


@app.command()
def bench(quick: Annotated[bool, typer.Option(help="small sizes, for a smoke check")] = False) -> None:
    """Run the benchmarks in benchmarks/ (backtest vs backtrader, event store) and print the figures."""
    script = ROOT / "benchmarks" / "run_all.py"
    if not script.exists():
        raise UserError(f"{script} not found: `qlcore bench` runs from a clone of the repository")
    sys.argv = [str(script), *(["--quick"] if quick else [])]
    runpy.run_path(str(script), run_name="__main__")


@app.command()
def demo(
    db: Annotated[str | None, typer.Option(help="store URL")] = None,
    report: Annotated[Path | None, typer.Option(help="HTML report path (default data/reports/demo.html)")] = None,
) -> None:
    """The main job of `make up`: every built-in strategy on the embedded real data, stored, verified, reported."""
    from qlcore.demo import run_demo

    run_demo(db=db, report=report, echo=typer.echo)


@app.command()
def up(
    port: Annotated[int, typer.Option(help="dashboard port")] = 5006,
    speed: Annotated[float, typer.Option(help="engine feed speed: trading days per second")] = 5.0,
    backtests: Annotated[bool, typer.Option(help="run the backtest demo first")] = True,
) -> None:
    """What `make up` runs: the backtest demo, then the paper engine, the scheduler and the dashboards until Ctrl-C."""
    from qlcore.up import run_up

    raise typer.Exit(run_up(port=port, speed=speed, demo_backtests=backtests, echo=typer.echo))


@app.command()
def parity(
    strategy: Annotated[str, typer.Option("--strategy", "-s", help="a strategy with a vectorized form (sma_cross, mean_reversion) or module:Class")],
    symbols: SymbolsOption = None,
    data_file: DataFilesOption = None,
    param: ParamsOption = None,
    start: StartOption = None,
    end: EndOption = None,
    cash: CashOption = "100000",
    fee_bps: FeeBpsOption = "0",
    paper: Annotated[bool, typer.Option("--paper", help="compare the paper engine on the replay feed with the backtest, instead of vectorbt with the engine (any strategy)")] = False,
    min_fee: Annotated[str, typer.Option(help="minimum fee per order (--paper)")] = "0",
    slippage_bps: Annotated[str, typer.Option(help="slippage in basis points on market and stop fills (--paper)")] = "0",
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    db: Annotated[str | None, typer.Option(help="store URL (default: QLCORE_DB_URL or data/qlcore.db)")] = None,
    store: Annotated[bool, typer.Option(help="record the verdict in the store (the research page lists it)")] = True,
    user: Annotated[str | None, typer.Option("--user", help="who ran the check (default: QLCORE_USER or login name)")] = None,
) -> None:
    """Run a strategy through vectorbt and the event-driven engine (--paper: the paper engine and the
    backtest); exit 1 unless they trade identically."""
    from qlcore.engine.cli import resolve_user
    from qlcore.engine.config import BacktestConfig
    from qlcore.research import NoVectorizedFormError
    from qlcore.research import parity as run_parity
    from qlcore.store.db import connect
    from qlcore.store.runs import save_parity

    params = _parse_params(param or [])
    if paper:
        _paper_parity(strategy, params, _load_frames(symbols, data_file or [], start, end),
                      BacktestConfig.from_mapping({"initial_cash": cash, "fee_bps": fee_bps, "min_fee": min_fee,
                                                   "slippage_bps": slippage_bps}),
                      as_json=as_json, db=db, user=resolve_user(user), store=store)
        return
    config = BacktestConfig.from_mapping({"initial_cash": cash, "fee_bps": fee_bps})  # checks both
    frames = _load_frames(symbols, data_file or [], start, end)
    try:
        report = run_parity(strategy, params, frames, fee_bps=config.fee_bps, init_cash=config.initial_cash)
    except NoVectorizedFormError as exc:
        raise UserError(str(exc)) from None
    record_id = save_parity(connect(db), report.to_dict(), resolve_user(user)) if store else None
    if as_json:
        typer.echo(report.to_json())
    else:
        typer.secho(report.summary(), fg=typer.colors.GREEN if report.ok else typer.colors.RED)
        differences = report.differences
        if len(differences):
            import pandas as pd

            shown = differences.head(20).drop(columns=["match"])
            with pd.option_context("display.width", 250, "display.max_columns", 30):
                typer.echo(f"\ndiffering trades ({len(differences)}; first {len(shown)} shown, engine vs vectorbt):")
                typer.echo(shown.to_string(index=False))
        if record_id is not None:
            typer.echo(f"\nrecorded as parity check {record_id} (research page)")
    if not report.ok:
        raise typer.Exit(1)


def _paper_parity(strategy: str, params: dict[str, Any], frames: Any, config: Any, *, as_json: bool,
                  db: str | None, user: str, store: bool) -> None:
    """`qlcore parity --paper`: the paper engine on the replay feed against the backtest, recorded like the other checks."""
    from qlcore.research.paper_parity import paper_parity
    from qlcore.store.db import connect
    from qlcore.store.runs import save_parity

    report = paper_parity(strategy, params, frames, config=config)
    record_id = save_parity(connect(db), report.to_dict(), user) if store else None
    if as_json:
        typer.echo(report.to_json())
    else:
        typer.secho(report.summary(), fg=typer.colors.GREEN if report.ok else typer.colors.RED)
        if record_id is not None:
            typer.echo(f"\nrecorded as parity check {record_id} (research page)")
    if not report.ok:
        raise typer.Exit(1)


def _click_exception_modules() -> list[Any]:
    """Usage errors come from click, or from the copy of click that newer typer versions carry."""
    import click

    modules: list[Any] = [click.exceptions]
    try:
        from typer import _click

        modules.append(_click.exceptions)
    except ImportError:
        pass
    return modules


def main() -> None:
    try:
        # without standalone mode click returns the exit code of `raise typer.Exit(n)` instead of exiting
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        for exceptions in _click_exception_modules():
            if isinstance(exc, exceptions.ClickException):
                exc.show()
                sys.exit(exc.exit_code)
            if isinstance(exc, getattr(exceptions, "Abort", ())):
                sys.exit(130)
        if isinstance(exc, _known_errors()):
            msg = exc.args[0] if isinstance(exc, (KeyError, LookupError)) and exc.args else exc
            typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
            sys.exit(2)
        from qlcore.store.errors import STORE_ERRORS, StoreUnavailable, describe

        if isinstance(exc, (StoreUnavailable, *STORE_ERRORS)):  # one sentence, never a driver traceback
            typer.secho(f"error: {describe(exc)}", fg=typer.colors.RED, err=True)
            sys.exit(3)
        raise


if __name__ == "__main__":
    main()
