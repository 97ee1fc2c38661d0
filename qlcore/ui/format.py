"""Display formatting for the dashboards: money with thousands separators, coloured P&L, timestamps.

Values stay `Decimal` up to here; text is made once, at the display boundary.
"""
from __future__ import annotations

import html
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any


def dec(value: Any) -> Decimal | None:
    """`value` as a Decimal (snapshot decimals are strings); None when empty or not a number."""
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def money(value: Any, places: int = 2) -> str:
    """``1,234,567.89``; an em dash for a missing value."""
    d = dec(value)
    return "—" if d is None else f"{d:,.{places}f}"


def qty(value: Any) -> str:
    d = dec(value)
    if d is None:
        return "—"
    return f"{d:,.0f}" if d == d.to_integral_value() else f"{d.normalize():,f}"


def pct(value: Any, places: int = 1) -> str:
    d = dec(value)
    return "—" if d is None else f"{d * 100:,.{places}f}%"


def pnl_html(value: Any, places: int = 2) -> str:
    """Money in a span coloured by sign (class ``pnl-pos`` / ``pnl-neg``), with an explicit + for gains."""
    d = dec(value)
    if d is None:
        return "—"
    cls = "pnl-pos" if d > 0 else "pnl-neg" if d < 0 else "pnl-zero"
    sign = "+" if d > 0 else ""
    return f'<span class="{cls}">{sign}{d:,.{places}f}</span>'


def ts_text(ns: Any) -> str:
    """A wall-clock ns timestamp as ``YYYY-MM-DD HH:MM:SS`` UTC."""
    try:
        return datetime.fromtimestamp(int(ns) / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "—"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


CSS = """
.pnl-pos { color: #1a7f37; font-weight: 600; }
.pnl-neg { color: #cf222e; font-weight: 600; }
.pnl-zero { color: #57606a; }
.ql-cards { display: flex; flex-wrap: wrap; gap: 8px; }
.ql-card { flex: 1 1 150px; border: 1px solid #d0d7de; border-radius: 6px; padding: 6px 10px; background: #fff; }
.ql-card .label { font-size: 12px; color: #57606a; }
.ql-card .value { font-size: 20px; font-variant-numeric: tabular-nums; }
.ql-status { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; font-size: 14px; }
.ql-badge { padding: 2px 8px; border-radius: 10px; font-weight: 700; color: #fff; background: #57606a; }
.ql-badge.ACTIVE { background: #1a7f37; } .ql-badge.REDUCING { background: #bf8700; }
.ql-badge.HALTED { background: #cf222e; } .ql-badge.STALE { background: #cf222e; }
.ql-badge.PAUSED { background: #bf8700; } .ql-badge.RUNNING { background: #1a7f37; }
.ql-badge.FAILED { background: #cf222e; } .ql-fault { font-size: 12px; color: #cf222e; }
.ql-bar { background: #eaeef2; border-radius: 4px; height: 10px; min-width: 80px; }
.ql-bar > div { height: 10px; border-radius: 4px; }
.ql-scroll { overflow: auto; }
.ql-scroll thead th { position: sticky; top: 0; background: #f6f8fa; }
table.ql { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
table.ql td, table.ql th { padding: 2px 6px; border-bottom: 1px solid #eaeef2; text-align: left; }
table.ql td.num { text-align: right; }
.ql-alert-error, .ql-alert-critical { color: #cf222e; } .ql-alert-warning { color: #bf8700; }
"""
