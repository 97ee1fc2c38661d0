"""`qlcore report ...`: the daily trade blotter and risk summary, as CSV and HTML files."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

report_app = typer.Typer(help="Reports: the daily trade blotter and risk summary.", no_args_is_help=True)


@report_app.command("daily")
def daily(
    day: Annotated[str, typer.Option("--date", help="UTC calendar day, YYYY-MM-DD")],
    stream: Annotated[list[str] | None, typer.Option("--stream", help="a stream (run) to include; repeatable; default: all")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="folder for the files (default: data/reports)")] = None,
    db: Annotated[str | None, typer.Option(help="store URL (default: QLCORE_DB_URL or data/qlcore.db)")] = None,
) -> None:
    """Write blotter-<day>.csv, risk-<day>.csv and report-<day>.html; print their paths and a summary."""
    from qlcore.audit.reports import daily_report, parse_day
    from qlcore.events import EventStore

    try:
        the_day = parse_day(day)
    except ValueError as exc:
        typer.secho(f"error: --date: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    store = EventStore(db)
    if stream:
        unknown = sorted(set(stream) - set(store.streams()))
        if unknown:
            typer.secho(f"error: --stream: no such stream(s) {', '.join(unknown)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
    report = daily_report(store, the_day, streams=stream or None)
    if out is None:
        from qlcore.store.db import project_data_dir

        out = project_data_dir() / "reports"
    for path in report.write(out).values():
        typer.echo(str(path))
    typer.echo(report.summary())
    from qlcore.audit.log import AuditLog

    anchor = AuditLog(engine=store.engine).anchor()  # the audit head, pinned: keep this line elsewhere too
    typer.echo(f"audit anchor: seq {anchor.seq} hash {anchor.hash} at {anchor.when}")
