"""`qlcore audit ...`: check the audit log's chain and trace an order's lineage."""
from __future__ import annotations

from typing import Annotated

import typer

audit_app = typer.Typer(help="Audit log: verify the hash chain, trace an order.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    db: Annotated[str | None, typer.Option(help="store URL (default: QLCORE_DB_URL or data/qlcore.db)")] = None,
) -> None:
    """Walk the hash chain; print OK with the entry count, or name the first bad entry and exit 1."""
    from qlcore.audit.log import AuditLog

    result = AuditLog(db).verify()
    if result.ok:
        typer.secho(str(result), fg=typer.colors.GREEN)
        return
    typer.secho(f"audit log {result}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@audit_app.command("anchor")
def anchor(
    db: Annotated[str | None, typer.Option(help="store URL (default: QLCORE_DB_URL or data/qlcore.db)")] = None,
) -> None:
    """Pin the audit log's head now: a signed line in the anchor file, outside the database."""
    from qlcore.audit.log import AuditLog

    log = AuditLog(db, conflict_retries=20)
    a = log.anchor()
    typer.echo(f"anchored seq {a.seq} hash {a.hash} at {a.when} in {log.anchors.path}")


@audit_app.command("trace")
def trace(
    order_id: Annotated[str, typer.Argument(help="order id (O-3), or RUN/ORDER_ID for one run")],
    run: Annotated[str | None, typer.Option("--run", help="the run (event stream) the order belongs to")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="every run with this order id, not only the newest")] = False,
    db: Annotated[str | None, typer.Option(help="store URL")] = None,
) -> None:
    """Print an order's lineage: strategy -> checks -> order -> fills -> P&L (audit log, else event store)."""
    from qlcore.audit.lineage import trace as do_trace
    from qlcore.audit.lineage import trace_events
    from qlcore.audit.log import AuditLog
    from qlcore.events import EventStore
    from qlcore.store.db import connect

    engine = connect(db)
    lineages = do_trace(AuditLog(engine=engine), order_id, stream=run)
    if not lineages and run:
        found = trace_events(EventStore(engine=engine), run, order_id)
        lineages = [found] if found is not None else []
    if not lineages:
        where = f"run {run}" if run else "the audit log (give --run RUN to look in a run's events)"
        typer.secho(f"error: order {order_id} not found in {where}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    shown = lineages if all_runs else lineages[:1]
    typer.echo("\n\n".join(lin.render() for lin in shown))
    if len(lineages) > len(shown):
        others = ", ".join(lin.stream or "(no run)" for lin in lineages[1:])
        typer.echo(f"\n(order id {order_id} also in {len(lineages) - 1} older run(s): {others}; --all or --run RUN)")
