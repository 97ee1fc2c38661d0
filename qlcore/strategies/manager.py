"""The strategy manager: deploy, pause, resume and stop strategies inside a running kernel.

A strategy's lifecycle state changes only through `TRANSITIONS`; anything not in the table raises
`InvalidStrategyTransition` naming the strategy, its state and the action. Every change is a
lifecycle event, handed to `event_listeners` (store, audit) and the kernel's bus *before* the state
changes, so a failing listener leaves the strategy as it was.

The manager routes bars (only RUNNING strategies get them) and keeps the kernel's `RiskChain`
informed: each strategy's state goes to the chain's lifecycle part (an order from a strategy that
is not RUNNING is denied there), each deployment's capital and limits to the chain's rules.

Live statistics per strategy are updated in O(1) per fill and per sample: cash flow and quantities
from fills, and an equity series (capital allocation + P&L at the last closes) sampled once per
bar timestamp, when the next timestamp arrives or `sample()` is called. Sharpe uses Welford's
running mean and variance of the simple returns; drawdown tracks the running peak. The definitions
are those of `qlcore.portfolio.metrics.compute_metrics` on the same series.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from qlcore.engine.kernel import Kernel
from qlcore.events.facts import (
    StrategyDeployed,
    StrategyPaused,
    StrategyResumed,
    StrategyStopped,
)
from qlcore.events.types import Event, OrderFilled
from qlcore.model.enums import OrderSide, OrderStatus
from qlcore.model.market import Bar
from qlcore.model.money import ZERO, canonical, to_decimal
from qlcore.risk.chain import RiskChain
from qlcore.strategies.base import Strategy
from qlcore.strategies.registry import create_strategy

__all__ = [
    "LIMIT_KEYS",
    "TRANSITIONS",
    "Action",
    "InvalidStrategyTransition",
    "StrategyDeployed",
    "StrategyManager",
    "StrategyPaused",
    "StrategyResumed",
    "StrategyState",
    "StrategyStats",
    "StrategyStopped",
]


class StrategyState(StrEnum):
    DEPLOYED = "DEPLOYED"  # created, validated and bound; `on_start` not yet called
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"


class Action(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"


St, A = StrategyState, Action

# (state, action) -> next state. STOPPED is final: a stopped strategy is deployed again under a new id.
TRANSITIONS: dict[tuple[StrategyState, Action], StrategyState] = {
    (St.DEPLOYED, A.START): St.RUNNING,
    # a strategy can be withdrawn before it ever ran (on_stop is still called: it was bound)
    (St.DEPLOYED, A.STOP): St.STOPPED,
    (St.RUNNING, A.PAUSE): St.PAUSED,
    (St.RUNNING, A.STOP): St.STOPPED,
    (St.PAUSED, A.RESUME): St.RUNNING,
    # stopping a paused strategy is the usual way out of an incident: no resume needed first
    (St.PAUSED, A.STOP): St.STOPPED,
}


class InvalidStrategyTransition(ValueError):
    """An action that the strategy's current lifecycle state does not allow."""

    def __init__(self, strategy_id: str, state: StrategyState, action: Action) -> None:
        self.strategy_id, self.state, self.action = strategy_id, state, action
        allowed = sorted(a.value for (s, a) in TRANSITIONS if s is state) or ["none (final state)"]
        super().__init__(
            f"strategy {strategy_id}: cannot {action.value} in state {state.value}; "
            f"allowed: {', '.join(allowed)}"
        )


# per-strategy limits a deployment may set, enforced by the risk rules of the same name (with the
# same meaning as in the risk config; where both set one, the tighter applies)
LIMIT_KEYS: dict[str, str] = {
    "max_order_quantity": "largest quantity of one order",
    "max_position": "largest worst-case absolute position in one instrument (open orders on the order's side included)",
}


@dataclass(frozen=True, slots=True)
class StrategyStats:
    """A snapshot of one strategy's live statistics. Money is Decimal; ratios are floats (NaN if undefined)."""

    strategy_id: str
    state: StrategyState
    allocation: Decimal
    realized_pnl: Decimal  # gross of fees, as `Position.realized_pnl`
    unrealized_pnl: Decimal  # at the last closes seen
    fees: Decimal
    pnl: Decimal  # realized + unrealized - fees
    equity: Decimal  # allocation + pnl
    gross_exposure: Decimal  # sum of |quantity x last close|
    net_exposure: Decimal
    trade_count: int  # fills
    samples: int  # points of the equity series, the deployment point included
    sharpe: float
    max_drawdown: float  # a negative fraction, as `Metrics.max_drawdown`


class _Record:
    """The manager's view of one deployed strategy, with its running statistics."""

    __slots__ = (
        "allocation",
        "cash",
        "fills",
        "last_equity",
        "limits",
        "m2",
        "max_drawdown",
        "max_return",
        "mean",
        "min_return",
        "n_returns",
        "name",
        "params",
        "peak",
        "quantities",
        "samples",
        "state",
        "strategy",
        "symbols",
    )

    def __init__(
        self, strategy: Strategy, name: str, params: dict[str, Any], symbols: tuple[str, ...],
        allocation: Decimal, limits: dict[str, Decimal],
    ) -> None:
        self.strategy = strategy
        self.name = name
        self.params = params
        self.symbols = symbols
        self.allocation = allocation
        self.limits = limits
        self.state = StrategyState.DEPLOYED
        self.fills = 0
        # float mirror of the strategy's cash (allocation + cash flow) and quantities, for the
        # per-bar equity samples
        self.cash = float(allocation)
        self.quantities: dict[str, float] = {}
        self.samples = 0
        self.last_equity = math.nan
        self.peak = math.nan
        self.max_drawdown = 0.0
        self.n_returns = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min_return = math.inf
        self.max_return = -math.inf

    def add_sample(self, equity: float) -> None:
        """One more point of the equity series: O(1) updates of return moments and drawdown."""
        if self.samples:
            r = equity / self.last_equity - 1.0
            self.n_returns += 1
            delta = r - self.mean
            self.mean += delta / self.n_returns
            self.m2 += delta * (r - self.mean)
            if r < self.min_return:
                self.min_return = r
            if r > self.max_return:
                self.max_return = r
        if not equity <= self.peak:  # the first sample (peak NaN) or a new high
            self.peak = equity
        dd = equity / self.peak - 1.0
        if dd < self.max_drawdown:
            self.max_drawdown = dd
        self.last_equity = equity
        self.samples += 1

    def sharpe(self, periods_per_year: float) -> float:
        # as compute_metrics: NaN with fewer than two returns or when every return is equal
        if self.n_returns < 2 or self.min_return == self.max_return:
            return math.nan
        std = math.sqrt(self.m2 / (self.n_returns - 1))
        return self.mean / std * math.sqrt(periods_per_year) if std > 0 else math.nan


class StrategyManager:
    """Deploys strategies into `kernel` and runs their lifecycle; routes bars; keeps live statistics.

    Parameters
    ----------
    kernel
        The kernel the strategies trade through; its risk hook must be a `RiskChain`. The manager
        reports each strategy's state to the chain's lifecycle part and each deployment's limits
        (its capital among them) to the chain's rules, and adds itself to `kernel.fill_listeners`.
    periods_per_year
        Equity samples per year, for annualising the Sharpe ratio (252 for daily bars).
    """

    def __init__(self, kernel: Kernel, *, periods_per_year: float = 252.0) -> None:
        if not periods_per_year > 0:
            raise ValueError(f"periods_per_year must be positive, got {periods_per_year!r}")
        self.kernel = kernel
        self.periods_per_year = float(periods_per_year)
        self.event_listeners: list[Callable[[Event], object]] = []
        self.events: list[Event] = []
        self._records: dict[str, _Record] = {}
        self._by_symbol: dict[str, list[_Record]] = {}
        self._last_close: dict[str, float] = {}
        self._open_ts: int | None = None  # the bar timestamp whose equity is not sampled yet
        self._pending: list[tuple[_Record, OrderFilled]] = []
        chain = kernel.risk
        if not isinstance(chain, RiskChain):
            raise TypeError(
                f"the kernel's risk hook is a {type(chain).__name__}: the strategy manager needs a kernel "
                "built with risk=RiskChain(...), whose lifecycle part it tells each strategy's state"
            )
        self.chain = chain
        kernel.fill_listeners.append(self._on_fill)

    # --- lifecycle -------------------------------------------------------------------------------
    def deploy(
        self,
        strategy: str,
        params: Mapping[str, Any] | None = None,
        *,
        symbols: Sequence[str],
        allocation: Decimal | int | str,
        limits: Mapping[str, Decimal | int | str] | None = None,
        strategy_id: str | None = None,
        actor: str = "system",
        start: bool = True,
    ) -> Strategy:
        """Create, check and bind a strategy (built-in name or `module:Class`); start it unless `start=False`.

        Raises the registry's errors for an unknown strategy or parameter (they list the valid
        ones), and ValueError for a taken id, unknown symbols, a non-positive allocation or an
        unknown or non-positive limit.
        """
        instance = create_strategy(strategy, params, strategy_id=strategy_id)
        sid = instance.strategy_id
        if sid == "account":
            raise ValueError("'account' is the scope of the whole account: choose another strategy id")
        if sid in self._records or sid in self.kernel.strategies:
            raise ValueError(f"strategy id {sid!r} is already deployed")
        subs = tuple(symbols)
        if not subs:
            raise ValueError(f"strategy {sid}: no symbols given")
        unknown = sorted(set(subs) - set(self.kernel.instruments))
        if unknown:
            raise ValueError(
                f"strategy {sid}: unknown symbol(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.kernel.instruments))}"
            )
        capital = to_decimal(allocation)
        if capital <= 0:
            raise ValueError(f"strategy {sid}: capital allocation must be > 0, got {capital}")
        checked = _checked_limits(sid, limits or {})

        details = json.dumps(
            {
                "strategy": strategy,
                "params": {k: _jsonable(v) for k, v in instance.param_values.items()},
                "symbols": list(subs),
                "allocation": canonical(capital),
                "limits": {k: canonical(v) for k, v in checked.items()},
                "start": start,
            },
            sort_keys=True,
        )
        self._record_event(StrategyDeployed(self.kernel.clock.now, sid, actor, details))
        record = _Record(instance, strategy, dict(instance.param_values), subs, capital, checked)
        self.chain.deploy(sid, {"capital": capital, **checked})
        self.chain.lifecycle.set_state(sid, record.state.value)
        instance.bind(self.kernel, subs)
        self.kernel.strategies[sid] = instance
        self._records[sid] = record
        for sym in subs:
            self._by_symbol.setdefault(sym, []).append(record)
        record.add_sample(record.cash)
        if start:
            self._start(record)
        return instance

    def start(self, strategy_id: str, *, actor: str = "system") -> None:
        """Start a strategy deployed with `start=False`; recorded as `StrategyResumed` with `first_start`."""
        record = self._record(strategy_id)
        _next(record, Action.START)  # refuse before anything is recorded
        self._record_event(
            StrategyResumed(self.kernel.clock.now, strategy_id, actor, json.dumps({"first_start": True}))
        )
        self._start(record)

    def _start(self, record: _Record) -> None:
        target = _next(record, Action.START)
        record.strategy.on_start()  # if it raises, the strategy stays DEPLOYED
        self._set_state(record, target)

    def pause(self, strategy_id: str, *, cancel_open_orders: bool = False, actor: str = "system") -> None:
        """No more bars, new orders denied; open orders stay working unless `cancel_open_orders`.

        Fills of orders still working reach the paused strategy's `on_fill` (its bookkeeping must
        stay right) and count in its statistics.
        """
        record = self._record(strategy_id)
        target = _next(record, Action.PAUSE)
        canceled = self._cancel_open(strategy_id) if cancel_open_orders else []
        details = json.dumps({"cancel_open_orders": cancel_open_orders, "canceled": canceled}, sort_keys=True)
        self._record_event(StrategyPaused(self.kernel.clock.now, strategy_id, actor, details))
        self._set_state(record, target)

    def resume(self, strategy_id: str, *, actor: str = "system") -> None:
        """Bars and orders again, from the next bar on."""
        record = self._record(strategy_id)
        target = _next(record, Action.RESUME)
        self._record_event(StrategyResumed(self.kernel.clock.now, strategy_id, actor, ""))
        self._set_state(record, target)

    def stop(self, strategy_id: str, *, flatten: bool = False, actor: str = "system") -> list[str]:
        """Cancel open orders, optionally send market orders to zero every position, call `on_stop`.

        Returns the ids of the flattening orders; they pass the kernel's own risk hook (not the
        lifecycle gate) and fill as the broker meets the next bars. The strategy gets no further
        callbacks, but its fills still count in its statistics.
        """
        record = self._record(strategy_id)
        target = _next(record, Action.STOP)
        canceled = self._cancel_open(strategy_id)
        flattening: list[str] = []
        if flatten:
            flattening = self._flatten(record)
        record.strategy.on_stop()
        details = json.dumps(
            {"flatten": flatten, "canceled": canceled, "flatten_orders": flattening}, sort_keys=True
        )
        self._record_event(StrategyStopped(self.kernel.clock.now, strategy_id, actor, details))
        self._set_state(record, target)
        self.kernel.strategies.pop(strategy_id, None)
        for sym in record.symbols:
            self._by_symbol[sym].remove(record)
        return flattening

    def _cancel_open(self, strategy_id: str) -> list[str]:
        ids = []
        for order in self.kernel.state.open_orders(strategy_id):
            if order.status is not OrderStatus.PENDING_CANCEL:
                self.kernel.cancel_order(order.order_id)
                ids.append(order.order_id)
        return ids

    def _flatten(self, record: _Record) -> list[str]:
        sid = record.strategy.strategy_id
        ids = []
        with self.chain.lifecycle.closing(sid):
            for symbol in list(record.quantities):
                oid = self.kernel.close_position(sid, symbol, tags="flatten")
                if oid is not None:
                    ids.append(oid)
        return ids

    # --- market data -----------------------------------------------------------------------------
    def warmup_needs(self) -> dict[str, int]:
        """Per symbol, the most bars of history a RUNNING strategy on it asks for after a restart."""
        needs: dict[str, int] = {}
        for symbol, records in self._by_symbol.items():
            n = max((r.strategy.warmup_bars() for r in records if r.state is StrategyState.RUNNING), default=0)
            if n > 0:
                needs[symbol] = n
        return needs

    def warm_up(self, bars: Iterable[Bar], restored: Collection[str] = ()) -> int:
        """Hand bars from before a restart (time-ordered) to the RUNNING strategies that asked for
        history (`warmup_bars`) or whose saved state was `restored` (`load_state`), through
        `on_warmup`: indicators and counters only, no orders. Returns the bars handed."""
        handed = 0
        running = StrategyState.RUNNING
        for bar in bars:
            for record in self._by_symbol.get(bar.symbol, ()):
                strategy = record.strategy
                if record.state is running and (strategy.warmup_bars() > 0 or strategy.strategy_id in restored):
                    strategy.on_warmup(bar)
                    handed += 1
        return handed

    def on_bar(self, bar: Bar) -> None:
        """Hand `bar` to the RUNNING strategies subscribed to its symbol (after the broker has seen it)."""
        if bar.ts != self._open_ts:
            self._close_period(bar.ts)
        self._last_close[bar.symbol] = bar.close
        running = StrategyState.RUNNING
        for record in self._by_symbol.get(bar.symbol, ()):
            if record.state is running:
                record.strategy.on_bar(bar)

    def _close_period(self, ts: int) -> None:
        # The first bar of a new timestamp closes the previous one. The broker has already matched
        # this bar, so fills stamped `ts` or later belong to the new period: they are applied
        # after the sample, those before it first.
        if self._open_ts is not None:
            pending = self._pending
            later = [(r, f) for r, f in pending if f.ts >= ts]
            if later:
                self._pending = [(r, f) for r, f in pending if f.ts < ts]
            self.sample()
            self._pending = later
        self._open_ts = ts
        self._apply_pending()

    def sample(self) -> None:
        """Add one equity point per live (not stopped) strategy at the last closes.

        Called when a new bar timestamp starts, closing the previous one; call it once more after
        the last bar. O(strategies x their traded symbols).
        """
        self._apply_pending()
        self._open_ts = None
        closes = self._last_close
        stopped = StrategyState.STOPPED
        for record in self._records.values():
            if record.state is stopped:
                continue
            equity = record.cash
            for sym, qty in record.quantities.items():
                if qty:
                    equity += qty * closes[sym]
            record.add_sample(equity)

    def _on_fill(self, fill: OrderFilled) -> None:
        record = self._records.get(fill.strategy_id)
        if record is None:
            return
        record.fills += 1
        record.quantities.setdefault(fill.symbol, 0.0)
        if fill.symbol not in self._last_close:  # a fill before any bar of its symbol reached us
            self._last_close[fill.symbol] = float(fill.price)
        self._pending.append((record, fill))  # into the equity mirror when its period is known

    def _apply_pending(self) -> None:
        for record, fill in self._pending:
            qty = float(fill.quantity) if fill.side is OrderSide.BUY else -float(fill.quantity)
            record.quantities[fill.symbol] += qty
            record.cash -= qty * float(fill.price) + float(fill.fee)
        self._pending = []

    # --- reading ---------------------------------------------------------------------------------
    def state(self, strategy_id: str) -> StrategyState:
        return self._record(strategy_id).state

    def strategy(self, strategy_id: str) -> Strategy:
        return self._record(strategy_id).strategy

    @property
    def strategy_ids(self) -> list[str]:
        return list(self._records)

    def stats(self, strategy_id: str) -> StrategyStats:
        """The strategy's P&L (Decimal, from the kernel's positions at the last closes) and ratios."""
        record = self._record(strategy_id)
        realized = unrealized = fees = gross = net = ZERO
        positions = self.kernel.state.positions
        for symbol in record.quantities:
            pos = positions[(strategy_id, symbol)]
            realized += pos.realized_pnl
            fees += pos.fees
            if pos.quantity:
                mark = to_decimal(self._last_close[symbol])
                unrealized += pos.unrealized_pnl(mark)
                value = pos.market_value(mark)
                net += value
                gross += abs(value)
        pnl = realized + unrealized - fees
        return StrategyStats(
            strategy_id=strategy_id,
            state=record.state,
            allocation=record.allocation,
            realized_pnl=realized,
            unrealized_pnl=unrealized,
            fees=fees,
            pnl=pnl,
            equity=record.allocation + pnl,
            gross_exposure=gross,
            net_exposure=net,
            trade_count=record.fills,
            samples=record.samples,
            sharpe=record.sharpe(self.periods_per_year),
            max_drawdown=record.max_drawdown,
        )

    # --- helpers ---------------------------------------------------------------------------------
    def _set_state(self, record: _Record, state: StrategyState) -> None:
        self.chain.lifecycle.set_state(record.strategy.strategy_id, state.value)
        record.state = state

    def _record(self, strategy_id: str) -> _Record:
        try:
            return self._records[strategy_id]
        except KeyError:
            known = ", ".join(sorted(self._records)[:20]) or "none"
            raise KeyError(f"no deployed strategy {strategy_id!r}; deployed: {known}") from None

    def _record_event(self, event: Event) -> None:
        # the record first: a failing listener (store) leaves the lifecycle state unchanged
        for listener in self.event_listeners:
            listener(event)
        self.events.append(event)
        self.kernel.bus.publish(event)


def _next(record: _Record, action: Action) -> StrategyState:
    try:
        return TRANSITIONS[(record.state, action)]
    except KeyError:
        raise InvalidStrategyTransition(record.strategy.strategy_id, record.state, action) from None


def _checked_limits(strategy_id: str, limits: Mapping[str, Decimal | int | str]) -> dict[str, Decimal]:
    unknown = sorted(set(limits) - set(LIMIT_KEYS))
    if unknown:
        valid = "; ".join(f"{k} ({h})" for k, h in LIMIT_KEYS.items())
        raise ValueError(f"strategy {strategy_id}: unknown limit(s) {', '.join(unknown)}; valid limits: {valid}")
    checked = {}
    for key, value in limits.items():
        amount = to_decimal(value)
        if amount <= 0:
            raise ValueError(f"strategy {strategy_id}: limit {key} must be > 0, got {amount}")
        checked[key] = amount
    return checked


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return canonical(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)
