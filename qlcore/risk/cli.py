"""`qlcore risk ...`: check a limits file and show the limits in force for a strategy and instrument."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

risk_app = typer.Typer(help="Pre-trade risk: check limit files, show resolved limits.", no_args_is_help=True)


@risk_app.callback()
def _group() -> None:
    """Pre-trade risk: check limit files, show resolved limits."""


@risk_app.command("limits")
def limits(
    config: Annotated[
        Path | None,
        typer.Argument(help="a TOML limits file ([account], [strategy.ID], [instrument.SYM], [runaway], [monitors], "
                            "[modes]); default: the default limits file"),
    ] = None,
    strategy: Annotated[str | None, typer.Option(help="show the limits in force for this strategy...")] = None,
    symbol: Annotated[str | None, typer.Option(help="...in this instrument")] = None,
) -> None:
    """Validate a limits file as the engine reads it (keys, levels, values, calendars); exit 2 naming the
    first problem. Without a file: the default limits file, which `qlcore engine` runs with when given none."""
    from qlcore.risk.calendar import CalendarError
    from qlcore.risk.chain import RiskSettings
    from qlcore.risk.config import FIELDS, RiskConfigError
    from qlcore.risk.defaults import DEFAULT_LIMITS_FILE
    from qlcore.risk.engine import RiskEngine

    config = config or DEFAULT_LIMITS_FILE
    if not config.is_file():
        typer.secho(f"error: limits file not found: {config}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        engine = RiskEngine(RiskSettings.from_file(config).limits)  # the engine's own loader
    except (RiskConfigError, CalendarError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    cfg = engine.config
    typer.echo(
        f"{config}: OK ({len(cfg.strategies)} strategies, {len(cfg.instruments)} instruments, "
        f"{len(cfg.strategy_instruments)} strategy x instrument overrides)"
    )
    if strategy is None and symbol is None:
        return
    lim = engine.limits_for(strategy or "*", symbol or "*")
    typer.echo(f"in force for strategy {strategy or '*'} in {symbol or '*'} (most specific level wins):")
    for name in FIELDS:
        value = getattr(lim, name)
        if value is not None and value is not False:
            typer.echo(f"  {name:<32} {value if not isinstance(value, Decimal) else format(value, 'f')}")
    typer.echo(f"  rules in order: {', '.join(lim.rule_names) or '(none)'}")
