"""Round-trip trades from fills: a trade opens when a position leaves zero and closes when it returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pandas as pd

from qlcore.events.types import OrderFilled
from qlcore.model.enums import OrderSide
from qlcore.model.money import ZERO
from qlcore.model.positions import Position

TRADE_COLUMNS = [
    "strategy_id",
    "symbol",
    "side",
    "entry_ts",
    "exit_ts",
    "quantity",
    "entry_price",
    "exit_price",
    "pnl",
    "fees",
    "closed",
]


@dataclass(slots=True)
class _Open:
    side: str
    entry_ts: int
    quantity: Decimal = ZERO  # the largest absolute size reached
    entry_notional: Decimal = ZERO
    entry_qty: Decimal = ZERO
    exit_notional: Decimal = ZERO
    exit_qty: Decimal = ZERO
    pnl: Decimal = ZERO
    fees: Decimal = ZERO
    pos: Position = field(default_factory=lambda: Position("", ""))


def round_trips(fills: list[OrderFilled], marks: dict[str, Decimal] | None = None) -> pd.DataFrame:
    """Trades as a DataFrame (`TRADE_COLUMNS`). P&L is net of fees; an open trade is marked at `marks`."""
    rows: list[dict] = []
    open_: dict[tuple[str, str], _Open] = {}
    for f in fills:
        key = (f.strategy_id, f.symbol)
        signed = f.quantity if f.side is OrderSide.BUY else -f.quantity
        remaining = signed
        fee_left = f.fee
        while remaining:
            t = open_.get(key)
            if t is None:
                t = open_[key] = _Open("LONG" if remaining > 0 else "SHORT", f.ts)
            pos_qty = t.pos.quantity
            if pos_qty and (pos_qty > 0) != (remaining > 0):
                # closing first: a flip closes this trade and opens the next with the rest
                part = min(abs(pos_qty), abs(remaining)) * (1 if remaining > 0 else -1)
            else:
                part = remaining
            fee = fee_left if part == remaining else f.fee * abs(part) / f.quantity
            fee_left -= fee
            realized = t.pos.apply_fill(part, f.price, fee)
            t.fees += fee
            t.pnl += realized - fee
            if (part > 0) == (t.side == "LONG"):
                t.entry_notional += abs(part) * f.price
                t.entry_qty += abs(part)
            else:
                t.exit_notional += abs(part) * f.price
                t.exit_qty += abs(part)
            t.quantity = max(t.quantity, abs(t.pos.quantity))
            remaining -= part
            if t.pos.is_flat:
                rows.append(_row(key, t, f.ts, closed=True))
                del open_[key]
    for key, t in open_.items():
        mark = (marks or {}).get(key[1])
        unreal = t.pos.unrealized_pnl(mark) if mark is not None else ZERO
        row = _row(key, t, None, closed=False)
        row["pnl"] = float(t.pnl + unreal)
        row["exit_price"] = float(mark) if mark is not None else float("nan")
        rows.append(row)
    df = pd.DataFrame(rows, columns=TRADE_COLUMNS)
    for col in ("entry_ts", "exit_ts"):
        df[col] = pd.to_datetime(df[col])
    return df


def _row(key: tuple[str, str], t: _Open, exit_ts: int | None, *, closed: bool) -> dict:
    return {
        "strategy_id": key[0],
        "symbol": key[1],
        "side": t.side,
        "entry_ts": t.entry_ts,
        "exit_ts": exit_ts,
        "quantity": float(t.quantity),
        "entry_price": float(t.entry_notional / t.entry_qty) if t.entry_qty else float("nan"),
        "exit_price": float(t.exit_notional / t.exit_qty) if t.exit_qty else float("nan"),
        "pnl": float(t.pnl),
        "fees": float(t.fees),
        "closed": closed,
    }
