"""The strategy manager: deploy, pause, resume and stop strategies inside a running kernel.

A strategy's lifecycle state changes only through `TRANSITIONS`; anything not in the table raises
`InvalidStrategyTransition` naming the strategy, its state and the action. Every change is a
lifecycle event, handed to `event_listeners` (store, audit) and the kernel's bus *before* the state
changes, so a failing listener leaves the strategy as it was.

A strategy's own code is guarded: a hook that raises, or an `on_bar` over its time budget, moves
that strategy alone to FAILED (`qlcore.strategies.faults`): its open orders are cancelled (and its
positions closed, if so configured), a `StrategyFailed` event records the hook, the error and its
traceback, and it gets no further callbacks. The others go on trading.

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
import logging
import math
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from qlcore.engine.kernel import Kernel
from qlcore.events.facts import (
    StrategyDeployed,
    StrategyFailed,
    StrategyPaused,
    StrategyResumed,
    StrategyStopped,
)
from qlcore.events.types import Event, OrderFilled
from qlcore.model.enums import OrderSide, OrderStatus
from qlcore.model.market import Bar
from qlcore.model.money import ZERO, canonical, to_decimal
from qlcore.risk.chain import RiskChain
from qlcore.store.scrub import scrub
from qlcore.strategies.base import Strategy
from qlcore.strategies.faults import Fault, FaultPolicy
from qlcore.strategies.registry import StrategyPlaces, create_strategy

__all__ = [
    "LIMIT_KEYS",
    "TRANSITIONS",
    "Action",
    "InvalidStrategyTransition",
    "StrategyDeployed",
    "StrategyFailed",
    "StrategyManager",
    "StrategyPaused",
    "StrategyResumed",
    "StrategyState",
    "StrategyStats",
    "StrategyStopped",
]

log = logging.getLogger("qlcore.strategies")


class StrategyState(StrEnum):
    DEPLOYED = "DEPLOYED"  # created, validated and bound; `on_start` not yet called
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"
    FAILED = "FAILED"  # its own code raised or ran over its budget; no callbacks until a person stops it


class Action(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    FAIL = "fail"  # taken by the manager itself, never by a command


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
    # a fault can strike in any live state: on_start of a deployed strategy, on_bar or save_state of
    # a running one, on_fill of a paused one (fills of its working orders still reach it)
    (St.DEPLOYED, A.FAIL): St.FAILED,
    (St.RUNNING, A.FAIL): St.FAILED,
    (St.PAUSED, A.FAIL): St.FAILED,
    # the only way out of FAILED, and a person's: no resume (the same code would meet the same bar
    # again); stop it, with --flatten if its positions must go, and deploy a fixed version under a new id
    (St.FAILED, A.STOP): St.STOPPED,
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
        "fault",
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
        self.fault: Fault | None = None  # why it is FAILED
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
    faults
        The per-bar time budget and whether a failed strategy's positions are closed.
    monotonic
        The clock that measures `on_bar` against the budget (seconds; tests inject their own).
    """

    def __init__(
        self, kernel: Kernel, *, periods_per_year: float = 252.0, faults: FaultPolicy | None = None,
        monotonic: Callable[[], float] = time.monotonic, places: StrategyPlaces | None = None,
    ) -> None:
        if not periods_per_year > 0:
            raise ValueError(f"periods_per_year must be positive, got {periods_per_year!r}")
        self.kernel = kernel
        self.periods_per_year = float(periods_per_year)
        self.faults = faults or FaultPolicy()
        self._monotonic = monotonic
        # where `module:Class` strategies may load from, as configured when the manager (the engine) starts
        self.places = places or StrategyPlaces.from_env()
        self._restoring = False
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
        kernel.deliver_fill = self._deliver_fill

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
        instance = create_strategy(strategy, params, strategy_id=strategy_id, places=self.places)
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
        try:
            record.strategy.on_start()
        except Exception as exc:
            self._fail(record, Fault.of("on_start", exc))
            return
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
        callbacks, but its fills still count in its statistics. A FAILED strategy's `on_stop` is not
        called (its code already failed); an `on_stop` that raises is logged and the stop goes on.
        """
        record = self._record(strategy_id)
        target = _next(record, Action.STOP)
        canceled = self._cancel_open(strategy_id)
        flattening: list[str] = []
        if flatten:
            flattening = self._flatten(record)
        body: dict[str, Any] = {"flatten": flatten, "canceled": canceled, "flatten_orders": flattening}
        if record.state is not StrategyState.FAILED:
            try:
                record.strategy.on_stop()
            except Exception as exc:  # stopping is the way out of trouble: it must not be blocked
                log.exception("strategy %s: on_stop raised; stopped all the same", strategy_id)
                body["on_stop_error"] = scrub(f"{type(exc).__name__}: {exc}")
        details = json.dumps(body, sort_keys=True)
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
                    try:
                        strategy.on_warmup(bar)
                    except Exception as exc:
                        self._fail(record, Fault.of("on_warmup", exc))
                        continue
                    handed += 1
        return handed

    def on_bar(self, bar: Bar) -> None:
        """Hand `bar` to the RUNNING strategies subscribed to its symbol (after the broker has seen it)."""
        if bar.ts != self._open_ts:
            self._close_period(bar.ts)
        self._last_close[bar.symbol] = bar.close
        running = StrategyState.RUNNING
        budget = self.faults.bar_budget_s
        clock = self._monotonic
        started: float | None = None
        for record in self._by_symbol.get(bar.symbol, ()):
            if record.state is not running:
                continue
            if budget is None:
                try:
                    record.strategy.on_bar(bar)
                except Exception as exc:
                    self._fail(record, Fault.of("on_bar", exc))
                continue
            if started is None:
                started = clock()
            try:
                record.strategy.on_bar(bar)
            except Exception as exc:
                self._fail(record, Fault.of("on_bar", exc))
                started = None
                continue
            ended = clock()  # also the start of the next strategy's call: one clock read per call
            elapsed = ended - started
            started = ended
            if elapsed > budget:
                self._fail(record, Fault.over_budget(elapsed, budget))
                started = None  # the failure's own work is nobody's bar time

    # --- faults ----------------------------------------------------------------------------------
    def _deliver_fill(self, strategy: Strategy, fill: OrderFilled) -> None:
        # the kernel hands each fill to its strategy through here (`Kernel.deliver_fill`)
        record = self._records.get(fill.strategy_id)
        if record is None or record.strategy is not strategy:
            strategy.on_fill(fill)  # not one of ours: as the kernel would
            return
        try:
            strategy.on_fill(fill)
        except Exception as exc:
            self._fail(record, Fault.of("on_fill", exc))

    def _fail(self, record: _Record, fault: Fault) -> None:
        """The strategy's own code failed: FAILED, its open orders cancelled (positions closed if so
        configured), recorded with the traceback; no further callbacks."""
        sid = record.strategy.strategy_id
        if record.state in (StrategyState.FAILED, StrategyState.STOPPED):
            log.error("strategy %s (%s) raised again in %s: %s", sid, record.state.value, fault.hook, fault.error)
            return
        _next(record, Action.FAIL)
        log.error("strategy %s FAILED in %s: %s\n%s", sid, fault.hook, fault.error, fault.traceback)
        canceled: list[str] = []
        flattening: list[str] = []
        if not self._restoring:  # while restoring, the engine cancels after reconciliation
            canceled = self._cancel_open(sid)
            flattening = self._flatten(record) if self.faults.flatten_on_failure else []
        self._record_event(StrategyFailed(self.kernel.clock.now, sid, "engine", fault.details(canceled, flattening)))
        self._set_failed(record, fault)

    @contextmanager
    def restoring(self) -> Iterator[None]:
        """While open (a restart re-deploying strategies from the log, before reconciliation with the
        venue), a strategy that fails is recorded FAILED but its orders are left alone: the engine
        cancels them once the log agrees with the venue (`cancel_open`)."""
        self._restoring = True
        try:
            yield
        finally:
            self._restoring = False

    def cancel_open(self, strategy_id: str) -> list[str]:
        """Request the cancel of every open order of the strategy; returns their ids."""
        self._record(strategy_id)
        return self._cancel_open(strategy_id)

    def restore_failed(self, event: StrategyFailed) -> None:
        """Bring a re-deployed strategy to the FAILED state its logged `StrategyFailed` left it in
        (a restart: no hook is called, nothing is cancelled or recorded again)."""
        record = self._record(event.strategy_id)
        _next(record, Action.FAIL)
        self._set_failed(record, Fault.from_details(event.details))

    def _set_failed(self, record: _Record, fault: Fault) -> None:
        self._set_state(record, StrategyState.FAILED)
        record.fault = fault
        self.kernel.strategies.pop(record.strategy.strategy_id, None)  # no more fills handed to it

    def fault(self, strategy_id: str) -> Fault | None:
        """Why the strategy is FAILED (None when it is not)."""
        return self._record(strategy_id).fault

    def saved_states(self) -> dict[str, Any]:
        """Each live strategy's `save_state()` (those returning None left out); one that raises fails."""
        kept = {}
        live = (StrategyState.DEPLOYED, StrategyState.RUNNING, StrategyState.PAUSED)
        for sid, record in list(self._records.items()):
            if record.state not in live:
                continue
            try:
                state = record.strategy.save_state()
            except Exception as exc:
                self._fail(record, Fault.of("save_state", exc))
                continue
            if state is not None:
                kept[sid] = state
        return kept

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
