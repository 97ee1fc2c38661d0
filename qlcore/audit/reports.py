"""The daily report: a trade blotter and a risk summary of one UTC calendar day, from the event store.

Each stream is folded with `TradingState` up to the end of the day, so the realized P&L of the day is
the fold's realized P&L at the end of the day minus at its start: the same arithmetic as the engine.
Money, prices and quantities stay exact Decimals in the frames and in the CSV files; the HTML rounds
for display only.
"""
from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from qlcore.events.store import EventStore
from qlcore.events.types import OrderCanceled, OrderDenied, OrderFilled, OrderInitialized
from qlcore.model.enums import OrderSide, OrderStatus
from qlcore.model.money import ZERO
from qlcore.model.state import TradingState
from qlcore.portfolio.report import _PAGE_CSS, _signed, write_report

__all__ = ["BLOTTER_COLUMNS", "DENIAL_COLUMNS", "POSITION_COLUMNS", "DailyReport", "daily_report"]

BLOTTER_COLUMNS = ["time", "stream", "order_id", "strategy", "symbol", "side", "quantity", "price", "notional", "fee"]
DENIAL_COLUMNS = ["rule", "denials", "example"]
POSITION_COLUMNS = ["strategy", "symbol", "bought", "sold", "net", "notional", "fees", "realized_pnl"]
ORDER_COUNTS = ("initialized", "filled", "denied", "canceled")

_DAY_NS = 86_400 * 10**9


@dataclass(frozen=True, eq=False)  # frames have no single truth value to compare
class DailyReport:
    """What happened on one UTC day: fills, order counts, denials per rule and per-instrument risk.

    `orders` counts orders initialized, filled (reached FILLED), denied and canceled that day.
    `denials` has one row per rule (the part of the reason before the first ':') with the first
    reason as its example; `positions` one row per strategy and symbol traded that day.
    """

    day: date
    streams: tuple[str, ...]
    blotter: pd.DataFrame
    orders: dict[str, int]
    denials: pd.DataFrame
    positions: pd.DataFrame
    fills: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fills", len(self.blotter))

    @property
    def is_empty(self) -> bool:
        return self.blotter.empty and not any(self.orders.values())

    @property
    def realized_pnl(self) -> Decimal:
        return sum(self.positions["realized_pnl"], ZERO)

    @property
    def fees(self) -> Decimal:
        return sum(self.positions["fees"], ZERO)

    @property
    def notional(self) -> Decimal:
        return sum(self.positions["notional"], ZERO)

    def summary(self) -> str:
        """One line: the day, its fills and orders, denials, notional, fees and realized P&L."""
        if self.is_empty:
            return f"{self.day}: no activity in {_plural(len(self.streams), 'stream')}"
        o = self.orders
        return (
            f"{self.day}: {_plural(self.fills, 'fill')}, orders {o['initialized']} initialized / "
            f"{o['filled']} filled / {o['denied']} denied / {o['canceled']} canceled, "
            f"notional {self.notional:,.2f}, fees {self.fees:,.2f}, realized P&L {self.realized_pnl:,.2f}"
        )

    def risk_frame(self) -> pd.DataFrame:
        """Denials per rule and the per-instrument figures as one table, told apart by `kind`."""
        denials = self.denials.assign(kind="denial")
        positions = self.positions.assign(kind="position")
        frames = [f for f in (positions, denials) if not f.empty]
        columns = ["kind", *POSITION_COLUMNS, *DENIAL_COLUMNS]
        if not frames:
            return pd.DataFrame(columns=columns)
        both = pd.concat(frames, ignore_index=True).reindex(columns=columns)
        return both.astype({"denials": "Int64"})  # a whole number, blank on position rows

    def write(self, folder: str | Path) -> dict[str, Path]:
        """Write `blotter-<day>.csv`, `risk-<day>.csv` and `report-<day>.html` into `folder`."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "blotter": out / f"blotter-{self.day}.csv",
            "risk": out / f"risk-{self.day}.csv",
            "html": out / f"report-{self.day}.html",
        }
        blotter = self.blotter.assign(time=self.blotter["time"].map(_iso))
        blotter.to_csv(paths["blotter"], index=False)
        self.risk_frame().to_csv(paths["risk"], index=False)
        write_report(paths["html"], self._sections(), title=f"Daily report {self.day}")
        return paths

    def _repr_html_(self) -> str:
        parts = [f"<h3>Daily report {self.day}</h3>"]
        for heading, body in self._sections():
            parts.append(f"<h4>{html.escape(heading)}</h4>{body}")
        return f'<div class="ql-daily"><style>{_NOTEBOOK_CSS}</style>{"".join(parts)}</div>'

    def _sections(self) -> list[tuple[str, str]]:
        where = ", ".join(self.streams) or "no streams"
        header = f"<p>{html.escape(self.summary())}<br><small>streams: {html.escape(where)}</small></p>"
        if self.is_empty:
            return [("Summary", header + f"<p>No activity on {self.day}: no orders and no fills.</p>")]
        orders = _table(["orders", "count"], [[html.escape(k), f"{v:,}"] for k, v in self.orders.items()])
        return [
            ("Summary", header + orders),
            ("Risk by strategy and symbol", self._positions_html()),
            ("Denials by rule", self._denials_html()),
            ("Trade blotter", self._blotter_html()),
        ]

    def _positions_html(self) -> str:
        rows = [
            [
                html.escape(r["strategy"]), html.escape(r["symbol"]), _qty(r["bought"]), _qty(r["sold"]),
                _qty(r["net"]), _money(r["notional"]), _money(r["fees"]),
                _signed(_money(r["realized_pnl"]), float(r["realized_pnl"])),
            ]
            for r in _records(self.positions)
        ]
        return _table(POSITION_COLUMNS, rows) if rows else "<p>No fills.</p>"

    def _denials_html(self) -> str:
        rows = [
            [html.escape(r["rule"]), f"{r['denials']:,}", html.escape(r["example"])] for r in _records(self.denials)
        ]
        return _table(DENIAL_COLUMNS, rows) if rows else "<p>No orders denied.</p>"

    def _blotter_html(self) -> str:
        rows = [
            [
                _iso(r["time"]), html.escape(r["stream"]), html.escape(r["order_id"]), html.escape(r["strategy"]),
                html.escape(r["symbol"]), html.escape(r["side"]), _qty(r["quantity"]), _qty(r["price"]),
                _money(r["notional"]), _money(r["fee"]),
            ]
            for r in _records(self.blotter)
        ]
        return _table(BLOTTER_COLUMNS, rows) if rows else "<p>No fills.</p>"


def daily_report(store: EventStore, day: date | str, *, streams: list[str] | None = None) -> DailyReport:
    """The report of UTC calendar day `day` (a date or "YYYY-MM-DD") over `streams` (default: all).

    A day without activity gives an empty report; an invalid date raises ValueError naming it.
    """
    the_day = parse_day(day)
    start = int(pd.Timestamp(the_day, tz="UTC").value)
    end = start + _DAY_NS
    chosen = sorted(store.streams()) if streams is None else list(streams)
    fills: list[dict] = []
    counts: Counter[str] = Counter()
    denials: dict[str, list] = {}
    positions: dict[tuple[str, str], dict[str, Decimal]] = {}
    for stream in chosen:
        _fold_day(store, stream, start, end, fills, counts, denials, positions)
    return DailyReport(
        day=the_day,
        streams=tuple(chosen),
        blotter=_blotter_frame(fills),
        orders={k: counts[k] for k in ORDER_COUNTS},
        denials=pd.DataFrame(
            [[rule, n, example] for rule, (n, example) in denials.items()], columns=DENIAL_COLUMNS
        ),
        positions=pd.DataFrame(
            [[s, sym, *v.values()] for (s, sym), v in sorted(positions.items())], columns=POSITION_COLUMNS
        ),
    )


def parse_day(day: date | str) -> date:
    """`day` as a date; a string must be an ISO date (YYYY-MM-DD)."""
    if isinstance(day, datetime):
        return day.date()
    if isinstance(day, date):
        return day
    try:
        return datetime.strptime(str(day), "%Y-%m-%d").replace(tzinfo=UTC).date()
    except ValueError:
        raise ValueError(f"invalid date {day!r}: expected YYYY-MM-DD") from None


def _fold_day(
    store: EventStore,
    stream: str,
    start: int,
    end: int,
    fills: list[dict],
    counts: Counter[str],
    denials: dict[str, list],
    positions: dict[tuple[str, str], dict[str, Decimal]],
) -> None:
    """Fold `stream` up to `end`, collecting what happened in [start, end)."""
    state = TradingState()
    realized_at_start: dict[tuple[str, str], Decimal] | None = None
    traded: set[tuple[str, str]] = set()
    for _, event in store.iter_events(stream):
        ts = getattr(event, "ts", 0)
        if ts >= end:
            break  # a stream's events are in time order
        if ts >= start and realized_at_start is None:
            realized_at_start = _realized(state)
        if not state.apply(event) or ts < start:
            continue  # a repeated trade id changes nothing, so it is not reported twice
        if isinstance(event, OrderInitialized):
            counts["initialized"] += 1
        elif isinstance(event, OrderDenied):
            counts["denied"] += 1
            rule = event.reason.split(":", 1)[0].strip()
            entry = denials.setdefault(rule, [0, event.reason])
            entry[0] += 1
        elif isinstance(event, OrderCanceled):
            counts["canceled"] += 1
        elif isinstance(event, OrderFilled):
            if state.orders[event.order_id].status is OrderStatus.FILLED:
                counts["filled"] += 1
            fills.append(_fill_row(stream, event))
            key = (event.strategy_id, event.symbol)
            traded.add(key)
            _add_fill(positions.setdefault(key, _empty_position()), event)
    if realized_at_start is None:
        realized_at_start = _realized(state)
    for key in traded:
        pos = state.positions[key]
        positions[key]["realized_pnl"] += pos.realized_pnl - realized_at_start.get(key, ZERO)


def _realized(state: TradingState) -> dict[tuple[str, str], Decimal]:
    return {key: pos.realized_pnl for key, pos in state.positions.items()}


def _empty_position() -> dict[str, Decimal]:
    return {name: ZERO for name in POSITION_COLUMNS[2:]}


def _add_fill(pos: dict[str, Decimal], fill: OrderFilled) -> None:
    if fill.side is OrderSide.BUY:
        pos["bought"] += fill.quantity
        pos["net"] += fill.quantity
    else:
        pos["sold"] += fill.quantity
        pos["net"] -= fill.quantity
    pos["notional"] += fill.quantity * fill.price
    pos["fees"] += fill.fee


def _fill_row(stream: str, fill: OrderFilled) -> dict:
    return {
        "time": pd.Timestamp(fill.ts, unit="ns", tz="UTC"),
        "stream": stream,
        "order_id": fill.order_id,
        "strategy": fill.strategy_id,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "quantity": fill.quantity,
        "price": fill.price,
        "notional": fill.quantity * fill.price,
        "fee": fill.fee,
    }


def _blotter_frame(fills: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(fills, columns=BLOTTER_COLUMNS)
    if frame.empty:
        return frame.astype({"time": "datetime64[ns, UTC]"})
    # several streams interleave by time; a stable sort keeps each stream's own order
    return frame.sort_values(["time"], kind="stable", ignore_index=True)


# --- HTML ----------------------------------------------------------------------------------------
_NOTEBOOK_CSS = "".join(
    line for line in _PAGE_CSS.splitlines(keepends=True) if line.startswith(("table.ql-trades", "text-align"))
)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="ql-trades"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _qty(x: Decimal) -> str:
    return f"{x:,f}"


def _money(x: Decimal) -> str:
    return f"{x:,.2f}"


def _iso(ts: pd.Timestamp) -> str:
    return ts.isoformat()


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"
