"""A read-only position view over a `TradingState`: by strategy, by instrument and for the whole account.

Everything is computed from the state's positions and cash at the given marks, in Decimals, in one
pass over the positions (O(positions) per call). Nothing in the state is changed.

Netting across strategies (the instrument lines): when strategies hold opposite sides of one symbol,
the smaller side is matched against the larger one at their average costs. The instrument's net
position keeps the average cost of the side that remains (a desk sees 6 long at 100, not a blended
price), and the P&L locked in by the matched quantity is `crossed_pnl`. So, per symbol,
`unrealized_pnl + crossed_pnl` equals the sum of the strategies' unrealized P&L, and the account's
cash + market value equals `TradingState.equity`.

P&L figures (unrealized, realized, crossed) are rounded half-even to `PNL_QUANTUM` (1e-10): an average
cost divides, so the exact figures carry 28 significant digits, and sums of such numbers round at
different places depending on the order of adding (the account's unrealized + realized would differ
from the sum over strategies in the 28th digit). At a fixed quantum every sum of the view is exact:
the account's figures are exactly the sums over strategies and over positions, and an instrument's
`crossed_pnl` is exactly its strategies' unrealized P&L less its own.

`buying_power = equity * leverage - gross exposure`, never below zero. Gross exposure is the sum of
|net quantity x mark| over instruments (what the account holds); net exposure the signed sum.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from qlcore.model.money import ONE, ZERO, canonical, to_decimal
from qlcore.model.state import TradingState

PNL_QUANTUM = Decimal("1e-10")  # exact for |P&L| below 1e17 within Decimal's 28 digits


def _pnl(value: Decimal) -> Decimal:
    return value.quantize(PNL_QUANTUM)


@dataclass(frozen=True, slots=True)
class PositionLine:
    """One position: a strategy's (`strategy_id` set) or an instrument's net over strategies (`None`)."""

    strategy_id: str | None
    symbol: str
    quantity: Decimal
    avg_price: Decimal | None
    cost: Decimal  # signed cost of the open quantity: quantity x avg_price
    mark: Decimal | None
    market_value: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    fees: Decimal
    crossed_pnl: Decimal = ZERO  # instrument lines: P&L locked in between strategies on opposite sides


@dataclass(frozen=True, slots=True)
class StrategyTotals:
    """One strategy's positions summed."""

    strategy_id: str
    positions: int  # open (non-flat) positions
    market_value: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    fees: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """The whole account at the marks."""

    cash: Decimal
    market_value: Decimal
    equity: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    fees: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal
    leverage: Decimal
    buying_power: Decimal


@dataclass(frozen=True, slots=True)
class PositionView:
    """Positions by strategy, by instrument, per-strategy totals and the account, at one set of marks."""

    by_strategy: tuple[PositionLine, ...]
    by_instrument: tuple[PositionLine, ...]
    strategies: tuple[StrategyTotals, ...]
    account: AccountSummary

    def to_rows(self) -> dict[str, Any]:
        """JSON-ready dicts for a status snapshot (Decimals as canonical strings)."""
        return {
            "account": _row(self.account),
            "strategies": [_row(s) for s in self.strategies],
            "by_strategy": [_row(p) for p in self.by_strategy],
            "by_instrument": [_row(p) for p in self.by_instrument],
        }


class _Side:
    __slots__ = ("cost", "quantity")

    def __init__(self) -> None:
        self.quantity = ZERO  # absolute
        self.cost = ZERO  # signed

    def avg(self) -> Decimal:
        return abs(self.cost) / self.quantity


class _Instrument:
    __slots__ = ("fees", "long", "realized", "short", "unrealized")

    def __init__(self) -> None:
        self.long = _Side()
        self.short = _Side()
        self.realized = ZERO
        self.unrealized = ZERO  # the strategies' unrealized P&L, summed
        self.fees = ZERO


def position_view(
    state: TradingState,
    marks: Mapping[str, Decimal] | None = None,
    *,
    leverage: Decimal | int | str = ONE,
) -> PositionView:
    """The position view of `state` at `marks` (default: the state's own marks).

    A non-flat position without a mark raises `ValueError` naming the symbol; flat ones need none.
    """
    lev = to_decimal(leverage)
    if lev <= 0:
        raise ValueError(f"leverage must be > 0, got {lev}")
    marks = state.marks if marks is None else marks

    lines: list[PositionLine] = []
    per_symbol: dict[str, _Instrument] = {}
    per_strategy: dict[str, list[PositionLine]] = {}
    for (strategy_id, symbol), pos in state.positions.items():
        qty = pos.quantity
        mark = marks.get(symbol)
        if qty and mark is None:
            raise ValueError(f"no mark price for {symbol}: {strategy_id} holds {qty} and needs one to be valued")
        value = qty * mark if qty and mark is not None else ZERO
        line = PositionLine(
            strategy_id,
            symbol,
            qty,
            pos.avg_price,
            pos.cost,
            mark,
            value,
            _pnl(value - pos.cost),
            _pnl(pos.realized_pnl),
            pos.fees,
        )
        lines.append(line)
        per_strategy.setdefault(strategy_id, []).append(line)
        inst = per_symbol.get(symbol)
        if inst is None:
            inst = per_symbol[symbol] = _Instrument()
        side = inst.long if qty > 0 else inst.short
        if qty:
            side.quantity += abs(qty)
            side.cost += pos.cost
        inst.realized += line.realized_pnl
        inst.unrealized += line.unrealized_pnl
        inst.fees += pos.fees

    instruments = tuple(_net_line(symbol, inst, marks.get(symbol)) for symbol, inst in per_symbol.items())
    strategies = tuple(_totals(sid, ls) for sid, ls in per_strategy.items())
    market_value = sum((i.market_value for i in instruments), ZERO)
    gross = sum((abs(i.market_value) for i in instruments), ZERO)
    equity = state.cash + market_value
    account = AccountSummary(
        cash=state.cash,
        market_value=market_value,
        equity=equity,
        unrealized_pnl=sum((p.unrealized_pnl for p in lines), ZERO),
        realized_pnl=sum((p.realized_pnl for p in lines), ZERO),
        fees=state.fees,
        gross_exposure=gross,
        net_exposure=market_value,
        leverage=lev,
        buying_power=max(ZERO, equity * lev - gross),
    )
    return PositionView(tuple(lines), instruments, strategies, account)


def _net_line(symbol: str, inst: _Instrument, mark: Decimal | None) -> PositionLine:
    long, short = inst.long, inst.short
    qty = long.quantity - short.quantity
    if qty > 0:
        avg: Decimal | None = long.avg()
    elif qty < 0:
        avg = short.avg()
    else:
        avg = None
    cost = qty * avg if avg is not None else ZERO
    value = qty * mark if qty and mark is not None else ZERO
    unrealized = _pnl(value - cost)
    # the matched quantity, min(long, short), was bought at the long side's average and sold at the
    # short side's: crossed x (short avg - long avg), which is what the strategies' unrealized P&L
    # holds beyond the net line's; taken as that difference, so the two add up exactly
    crossed_pnl = inst.unrealized - unrealized
    return PositionLine(
        None,
        symbol,
        qty,
        avg,
        cost,
        mark,
        value,
        unrealized,
        inst.realized,
        inst.fees,
        crossed_pnl,
    )


def _totals(strategy_id: str, lines: list[PositionLine]) -> StrategyTotals:
    return StrategyTotals(
        strategy_id=strategy_id,
        positions=sum(1 for p in lines if p.quantity),
        market_value=sum((p.market_value for p in lines), ZERO),
        unrealized_pnl=sum((p.unrealized_pnl for p in lines), ZERO),
        realized_pnl=sum((p.realized_pnl for p in lines), ZERO),
        fees=sum((p.fees for p in lines), ZERO),
        gross_exposure=sum((abs(p.market_value) for p in lines), ZERO),
        net_exposure=sum((p.market_value for p in lines), ZERO),
    )


def _row(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = canonical(value) if isinstance(value, Decimal) else value
    return out
