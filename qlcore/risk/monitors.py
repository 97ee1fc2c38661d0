"""Real-time risk monitors: drawdown, daily loss, gross exposure, concentration and historical VaR.

The engine calls `on_bar` (or `on_marks`, `on_fill`, `evaluate`) as prices and fills arrive. Each
evaluation makes one pass over the positions (O(positions)) and compares every configured limit:

* ``drawdown``        (peak equity - equity) / peak equity, a fraction; account and per strategy
* ``daily_loss``      equity at the start of the UTC day - equity, money; account and per strategy
* ``gross_exposure``  sum over instruments of |account net position x price|, money; account
* ``concentration``   the largest instrument's share of gross exposure, a fraction; account
* ``var``             historical value at risk, money: the loss of the worst `ceil(n x (1 - confidence))`-th
                      of the last n one-period account returns, at today's equity; account

Account equity is cash + positions at the last prices; a strategy's equity is its allocated capital
+ its P&L (realized + unrealized at the last prices - fees). A value over its limit (strictly: at the
limit passes) records `LimitBreached` with the limit and the value, then moves the scope to the
limit's action (REDUCING or HALTED) with both in the reason. A breach fires once; it re-arms when the
value is back within the limit, or when an authorised user returns the scope to ACTIVE (which also
restarts its drawdown peak and daily-loss baseline from the equity at that moment: the user has
acknowledged the loss).

A restarted engine picks up where the monitors were: `checkpoint` gives their state (peaks, day
baselines, the VaR window, which breaches have fired) as plain JSON data that the engine stores
beside the log with the sequence number it reflects; `SavedMonitors.parse` reads it back and
`restore` loads it, and the events logged after
that number are fed again with the monitors `silenced` (their breaches were acted on and logged when
they happened). Prices come only from `MarksUpdated` and fills from `OrderFilled`, both in the log,
so feeding the logged events again gives the values the live run had.

Configuration is the ``[monitors]`` TOML table::

    [monitors]
    var_confidence = "0.95"       # default 0.95
    var_window = 250              # returns kept, default 250
    var_min_samples = 20          # no VaR before this many returns, default 20
    concentration_min_gross = "0" # concentration is not judged below this gross exposure

    [monitors.account]
    drawdown = { limit = "0.10", action = "HALTED" }
    daily_loss = "50000"          # a bare value: action REDUCING
    gross_exposure = "2000000"
    concentration = { limit = "0.5", action = "REDUCING" }
    var = "30000"

    [monitors.strategy_default]   # every strategy without its own value
    drawdown = "0.20"

    [monitors.strategy.trend1]
    daily_loss = { limit = "5000", action = "HALTED" }
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from qlcore.events.facts import LimitBreached, TradingModeChanged
from qlcore.events.types import MarksUpdated, OrderFilled
from qlcore.model.market import Bar
from qlcore.model.money import ZERO, canonical, to_decimal
from qlcore.model.positions import Position
from qlcore.risk.modes import ACCOUNT, TradingMode, TradingModes, _toml_table

if TYPE_CHECKING:
    from qlcore.engine.kernel import Kernel

NS_PER_DAY = 86_400_000_000_000
CHECKPOINT_VERSION = 1
ONE = Decimal(1)

# monitor -> (what it measures, is it a fraction in [0, 1])
MONITORS: dict[str, tuple[str, bool]] = {
    "drawdown": ("(peak equity - equity) / peak equity", True),
    "daily_loss": ("equity at the day's start - equity", False),
    "gross_exposure": ("sum of |net position x price| over instruments", False),
    "concentration": ("largest instrument's |exposure| / gross exposure", True),
    "var": ("historical value at risk of one period, money", False),
}
ACCOUNT_MONITORS = tuple(MONITORS)
STRATEGY_MONITORS = ("drawdown", "daily_loss")
_TOP_KEYS = {
    "var_confidence": "confidence of the VaR, in (0, 1) (default 0.95)",
    "var_window": "account returns kept for the VaR (default 250)",
    "var_min_samples": "returns needed before the VaR is judged (default 20)",
    "concentration_min_gross": "gross exposure below which concentration is not judged (default 0)",
    "account": "table: limits of the whole account",
    "strategy_default": "table: limits of every strategy without its own",
    "strategy": "table of tables: limits of one strategy",
}


class MonitorConfigError(ValueError):
    """An unknown key or a bad value in the ``[monitors]`` table."""


@dataclass(frozen=True, slots=True)
class Limit:
    """One monitor's limit and what a breach does (REDUCING or HALTED)."""

    value: Decimal
    action: TradingMode = TradingMode.REDUCING


@dataclass(frozen=True, slots=True)
class ScopeLimits:
    """The limits of one scope; `None` means the monitor is off (or, per strategy, not set here)."""

    drawdown: Limit | None = None
    daily_loss: Limit | None = None
    gross_exposure: Limit | None = None
    concentration: Limit | None = None
    var: Limit | None = None

    def items(self) -> list[tuple[str, Limit]]:
        return [(name, lim) for name in MONITORS if (lim := getattr(self, name)) is not None]


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Every monitor limit (see the module docstring for the TOML form)."""

    account: ScopeLimits = ScopeLimits()
    strategy_default: ScopeLimits = ScopeLimits()
    strategies: Mapping[str, ScopeLimits] = field(default_factory=lambda: MappingProxyType({}))
    var_confidence: Decimal = Decimal("0.95")
    var_window: int = 250
    var_min_samples: int = 20
    concentration_min_gross: Decimal = ZERO

    def __post_init__(self) -> None:
        if not isinstance(self.strategies, MappingProxyType):
            object.__setattr__(self, "strategies", MappingProxyType(dict(self.strategies)))
        if not ZERO < self.var_confidence < ONE:
            raise MonitorConfigError(f"monitors config var_confidence: must be in (0, 1), got {self.var_confidence}")
        if self.var_window < 2:
            raise MonitorConfigError(f"monitors config var_window: must be >= 2, got {self.var_window}")
        if not 1 <= self.var_min_samples <= self.var_window:
            raise MonitorConfigError(
                f"monitors config var_min_samples: must be in 1..var_window ({self.var_window}), "
                f"got {self.var_min_samples}"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> MonitorConfig:
        """Build from the contents of the ``[monitors]`` table."""
        unknown = sorted(set(values) - set(_TOP_KEYS))
        if unknown:
            raise MonitorConfigError(f"monitors config: unknown key(s) {unknown}; valid keys: {sorted(_TOP_KEYS)}")
        kw: dict[str, Any] = {}
        for name in ("var_confidence", "concentration_min_gross"):
            if name in values:
                kw[name] = _number(f"monitors config {name}", values[name])
        for name in ("var_window", "var_min_samples"):
            if name in values:
                v = values[name]
                if isinstance(v, bool) or not isinstance(v, int):
                    raise MonitorConfigError(f"monitors config {name}: expected a whole number, got {v!r}")
                kw[name] = v
        kw["account"] = _scope("account", values.get("account", {}), ACCOUNT_MONITORS)
        kw["strategy_default"] = _scope("strategy_default", values.get("strategy_default", {}), STRATEGY_MONITORS)
        strategies = values.get("strategy", {})
        if not isinstance(strategies, Mapping):
            raise MonitorConfigError(f"monitors config [strategy]: expected a table of strategies, got {strategies!r}")
        kw["strategies"] = {
            sid: _scope(f"strategy.{sid}", body, STRATEGY_MONITORS) for sid, body in strategies.items()
        }
        return cls(**kw)

    @classmethod
    def from_toml(cls, source: str | Path) -> MonitorConfig:
        """Read the ``[monitors]`` table of a TOML document (text, or a `Path`)."""
        return cls.from_mapping(_toml_table(source, "monitors", MonitorConfigError))

    def for_strategy(self, strategy_id: str) -> ScopeLimits:
        """The strategy's limits: its own table first, then ``strategy_default``."""
        own = self.strategies.get(strategy_id)
        if own is None:
            return self.strategy_default
        base = self.strategy_default
        return ScopeLimits(
            drawdown=own.drawdown or base.drawdown,
            daily_loss=own.daily_loss or base.daily_loss,
        )


def _number(where: str, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise MonitorConfigError(f"{where}: expected a number, got {value!r}")
    try:
        number = to_decimal(value)
    except ValueError as exc:
        raise MonitorConfigError(f"{where}: {exc}") from None
    if number < 0:
        raise MonitorConfigError(f"{where}: must be >= 0, got {number}")
    return number


def _limit(where: str, name: str, spec: Any) -> Limit:
    action: Any = TradingMode.REDUCING.value
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"limit", "action"})
        if unknown:
            raise MonitorConfigError(f"{where} {name}: unknown key(s) {unknown}; valid keys: ['action', 'limit']")
        if "limit" not in spec:
            raise MonitorConfigError(f"{where} {name}: missing 'limit'")
        action = spec.get("action", action)
        spec = spec["limit"]
    value = _number(f"{where} {name}", spec)
    if MONITORS[name][1] and value > ONE:
        raise MonitorConfigError(f"{where} {name}: a fraction must be <= 1, got {value}")
    if action not in (TradingMode.REDUCING.value, TradingMode.HALTED.value):
        raise MonitorConfigError(f"{where} {name}: action must be 'REDUCING' or 'HALTED', got {action!r}")
    return Limit(value, TradingMode(action))


def _scope(section: str, body: Any, allowed: tuple[str, ...]) -> ScopeLimits:
    where = f"monitors config [{section}]"
    if not isinstance(body, Mapping):
        raise MonitorConfigError(f"{where}: expected a table of limits, got {body!r}")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise MonitorConfigError(f"{where}: unknown or misplaced key(s) {unknown}; valid keys here: {list(allowed)}")
    return ScopeLimits(**{name: _limit(where, name, spec) for name, spec in body.items()})


@dataclass(frozen=True, slots=True)
class Reading:
    """One monitor's last value for one scope (for dashboards and tests)."""

    scope: str
    monitor: str
    value: Decimal
    limit: Decimal | None


class _Track:
    """Equity path of one scope: last value, running peak, and the day's starting value."""

    __slots__ = ("day_start", "last", "peak")

    def __init__(self, equity: Decimal) -> None:
        self.last = self.peak = self.day_start = equity


@dataclass(frozen=True, slots=True)
class SavedMonitors:
    """`RiskMonitors.checkpoint` read back and checked (`parse`), ready for `restore`."""

    tracks: Mapping[str, tuple[Decimal, Decimal, Decimal]]  # scope -> last, peak, day start
    day: int | None
    period_ts: int | None
    sampled: Decimal | None
    returns: tuple[Decimal, ...]
    breached: frozenset[tuple[str, str]]
    prices: Mapping[str, Decimal]

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> SavedMonitors:
        """Raises `ValueError` (or KeyError, TypeError, ArithmeticError) on data of another version or shape."""
        if data.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"monitors: checkpoint version {data.get('version')!r}, expected {CHECKPOINT_VERSION}")
        return cls(
            tracks={scope: (Decimal(last), Decimal(peak), Decimal(start))
                    for scope, (last, peak, start) in data["tracks"].items()},
            day=data["day"],
            period_ts=data["period_ts"],
            sampled=None if data["sampled"] is None else Decimal(data["sampled"]),
            returns=tuple(Decimal(r) for r in data["returns"]),
            breached=frozenset((scope, monitor) for scope, monitor in data["breached"]),
            prices={symbol: Decimal(price) for symbol, price in data["prices"].items()},
        )


class RiskMonitors:
    """Evaluates the limits of a `MonitorConfig` on a kernel's state and acts through `TradingModes`.

    Parameters
    ----------
    kernel
        Whose state is watched and through whose `emit` `LimitBreached` is recorded.
    modes
        Where breaches move the account or a strategy.
    config
        The limits.
    actor
        The actor named on the mode changes.
    """

    def __init__(
        self, kernel: Kernel, modes: TradingModes, config: MonitorConfig | None = None, *, actor: str = "risk-monitor"
    ) -> None:
        self.kernel = kernel
        self.modes = modes
        self.config = config or MonitorConfig()
        self.actor = actor
        self.prices: dict[str, Decimal] = {}
        self.allocations: dict[str, Decimal] = {}
        self.readings: dict[tuple[str, str], Reading] = {}
        self.breaches: list[LimitBreached] = []
        self._tracks: dict[str, _Track] = {}
        self._breached: set[tuple[str, str]] = set()
        self._day: int | None = None
        self._period_ts: int | None = None
        self._sampled: Decimal | None = None  # account equity at the end of the last closed period
        self._returns: deque[Decimal] = deque()
        self._sorted: list[Decimal] = []
        self._limits: dict[str, ScopeLimits] = {}
        self.silenced = False  # while True, breaches are remembered but neither recorded nor acted on
        modes.listeners.append(self._on_mode)

    # --- wiring -----------------------------------------------------------------------------------
    def attach(self) -> None:
        """Evaluate on every fill and on `MarksUpdated` published on the kernel's bus."""
        self.kernel.fill_listeners.append(self._fill_listener)
        self.kernel.bus.subscribe(self.on_marks, MarksUpdated)  # type: ignore[arg-type]

    def add_strategy(self, strategy_id: str, allocation: Decimal | int | str) -> None:
        """Watch one strategy: its equity is `allocation` + its P&L."""
        capital = to_decimal(allocation)
        if capital <= 0:
            raise ValueError(f"monitors: strategy {strategy_id} allocation must be > 0, got {capital}")
        if strategy_id == ACCOUNT:
            raise ValueError(f"monitors: {ACCOUNT!r} is the account's scope, not a strategy id")
        self.allocations[strategy_id] = capital
        self._limits[strategy_id] = self.config.for_strategy(strategy_id)

    # --- inputs -----------------------------------------------------------------------------------
    def on_bar(self, bar: Bar, *, evaluate: bool = True) -> list[LimitBreached]:
        """A bar's close becomes the instrument's price; then evaluate at the bar's time.

        With many instruments per timestamp, pass ``evaluate=False`` for all bars but the last of
        the timestamp (or call `evaluate` once after them): one O(positions) pass per timestamp.
        """
        self.prices[bar.symbol] = Decimal(float.__repr__(bar.close))
        return self.evaluate(bar.ts) if evaluate else []

    def on_marks(self, event: MarksUpdated) -> list[LimitBreached]:
        for symbol, price in event.marks:
            self.prices[symbol] = price
        return self.evaluate(event.ts)

    def on_fill(self, fill: OrderFilled) -> list[LimitBreached]:
        return self.evaluate(fill.ts)

    def _fill_listener(self, fill: OrderFilled) -> None:
        self.evaluate(fill.ts)

    # --- evaluation -------------------------------------------------------------------------------
    def evaluate(self, ts: int | None = None) -> list[LimitBreached]:
        """Compute every monitored value at `ts` (default: the kernel's clock); act on new breaches."""
        if ts is None:
            ts = self.kernel.clock.now
        state = self.kernel.state
        allocations = self.allocations
        pnl: dict[str, Decimal] = {}
        net: dict[str, Decimal] = {}
        prices: dict[str, Decimal] = {}
        for (sid, symbol), pos in state.positions.items():
            unrealized = ZERO
            if pos.quantity:
                price = prices[symbol] = self._price(symbol, pos)
                unrealized = pos.quantity * price - pos.cost
                net[symbol] = net.get(symbol, ZERO) + pos.quantity
            if sid in allocations:
                pnl[sid] = pnl.get(sid, ZERO) + pos.realized_pnl - pos.fees + unrealized
        value = gross = largest = ZERO
        for symbol, qty in net.items():
            exposure = qty * prices[symbol]
            value += exposure
            gross += abs(exposure)
            if abs(exposure) > largest:
                largest = abs(exposure)
        equity = state.cash + value

        self._roll(ts, equity)
        out: list[LimitBreached] = []
        account = self.config.account
        self._judge_path(ts, ACCOUNT, equity, account, out)
        self._judge(ts, ACCOUNT, "gross_exposure", gross, account.gross_exposure, out)
        if gross > 0 and gross >= self.config.concentration_min_gross:
            self._judge(ts, ACCOUNT, "concentration", largest / gross, account.concentration, out)
        var = self.var(equity)
        if var is not None:
            self._judge(ts, ACCOUNT, "var", var, account.var, out)
        for sid, capital in allocations.items():
            self._judge_path(ts, sid, capital + pnl.get(sid, ZERO), self._limits[sid], out)
        return out

    def _price(self, symbol: str, pos: Position) -> Decimal:
        price = self.prices.get(symbol)
        if price is None:
            price = self.kernel.state.marks.get(symbol)
            if price is None:
                price = pos.cost / pos.quantity  # not priced yet: at cost
        return price

    def _roll(self, ts: int, equity: Decimal) -> None:
        # a later timestamp closes the previous period: its last account equity is one VaR sample
        # (an evaluation stamped earlier, e.g. a late fill report, belongs to the open period)
        if self._period_ts is None or ts > self._period_ts:
            track = self._tracks.get(ACCOUNT)
            if self._period_ts is not None and track is not None:
                self._sample(track.last)
            self._period_ts = ts
        day = ts // NS_PER_DAY
        if self._day is None or day > self._day:
            # each scope's day starts from its last equity of the previous day (yesterday's close)
            for track in self._tracks.values():
                track.day_start = track.last
            self._day = day

    def _sample(self, equity: Decimal) -> None:
        prev = self._sampled
        self._sampled = equity
        if prev is None or prev <= 0:
            return
        r = equity / prev - ONE
        self._returns.append(r)
        bisect.insort(self._sorted, r)
        if len(self._returns) > self.config.var_window:
            old = self._returns.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def var(self, equity: Decimal | None = None) -> Decimal | None:
        """Historical one-period VaR in money at `equity` (default: the last), or None before enough returns."""
        n = len(self._sorted)
        if n < self.config.var_min_samples:
            return None
        if equity is None:
            equity = self._tracks[ACCOUNT].last
        k = math.ceil(n * (ONE - self.config.var_confidence))  # the k-th worst return, 1-based
        worst = self._sorted[max(k, 1) - 1]
        return max(ZERO, -worst) * equity

    def _judge_path(self, ts: int, scope: str, equity: Decimal, limits: ScopeLimits, out: list[LimitBreached]) -> None:
        track = self._tracks.get(scope)
        if track is None:
            start = self.allocations.get(scope, equity)
            track = self._tracks[scope] = _Track(start)
        if equity > track.peak:
            track.peak = equity
        track.last = equity
        if track.peak > 0:
            self._judge(ts, scope, "drawdown", (track.peak - equity) / track.peak, limits.drawdown, out,
                        f"equity {canonical(equity)}, peak {canonical(track.peak)}")
        self._judge(ts, scope, "daily_loss", track.day_start - equity, limits.daily_loss, out,
                    f"equity {canonical(equity)}, day start {canonical(track.day_start)}")

    def _judge(
        self, ts: int, scope: str, monitor: str, value: Decimal, limit: Limit | None, out: list[LimitBreached],
        details: str = "",
    ) -> None:
        key = (scope, monitor)
        self.readings[key] = Reading(scope, monitor, value, None if limit is None else limit.value)
        if limit is None:
            return
        if value <= limit.value:
            self._breached.discard(key)
            return
        if key in self._breached:
            return  # already acted on; re-armed once the value is back within the limit
        self._breached.add(key)
        if self.silenced:
            return
        event = LimitBreached(ts, scope, monitor, canonical(limit.value), canonical(value), limit.action.value)
        self.kernel.emit(event)
        self.breaches.append(event)
        out.append(event)
        extra = f" ({details})" if details else ""
        reason = f"limit {monitor} of {scope} breached: {canonical(value)} > {canonical(limit.value)}{extra}"
        self.modes.restrict(scope, limit.action, reason=reason, actor=self.actor)

    # --- restart --------------------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """The state a restart needs, as JSON-ready data (Decimals as strings)."""
        return {
            "version": CHECKPOINT_VERSION,
            "tracks": {s: [str(t.last), str(t.peak), str(t.day_start)] for s, t in self._tracks.items()},
            "day": self._day,
            "period_ts": self._period_ts,
            "sampled": None if self._sampled is None else str(self._sampled),
            "returns": [str(r) for r in self._returns],
            "breached": sorted([scope, monitor] for scope, monitor in self._breached),
            "prices": {symbol: str(price) for symbol, price in self.prices.items()},
        }

    def restore(self, saved: SavedMonitors) -> None:
        """Take the state `saved` holds (it can be restored again: nothing of it is shared)."""
        tracks: dict[str, _Track] = {}
        for scope, (last, peak, day_start) in saved.tracks.items():
            track = tracks[scope] = _Track(last)
            track.peak, track.day_start = peak, day_start
        self._tracks = tracks
        self._day, self._period_ts, self._sampled = saved.day, saved.period_ts, saved.sampled
        self._returns = deque(saved.returns)
        self._sorted = sorted(saved.returns)
        self._breached = set(saved.breached)
        self.prices = dict(saved.prices)

    def _on_mode(self, event: TradingModeChanged) -> None:
        if event.new != TradingMode.ACTIVE.value:
            return
        # an authorised user took the scope back to ACTIVE: the loss so far is acknowledged
        track = self._tracks.get(event.scope)
        if track is not None:
            track.peak = track.day_start = track.last
        self._breached = {key for key in self._breached if key[0] != event.scope}
