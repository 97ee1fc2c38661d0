"""Runaway protection: a strategy that floods orders or fills, or outgrows its parent intent, is disabled.

`RunawayGuard` is a `RiskHook` wrapper, so an order over a limit is denied before it goes out:

* more than ``max_orders`` orders of one strategy within ``order_window_s`` (every order that
  reaches the guard counts, those the inner hook denies too: a loop is a loop);
* more than ``max_fills`` fills of one strategy within ``fill_window_s`` (seen through `on_fill`,
  which the engine adds to `Kernel.fill_listeners`);
* a child order that would take the strategy's orders in an instrument, on the side of its declared
  intent (`declare_intent`), beyond the intent's quantity (filled quantity of finished children +
  full quantity of open ones, so a cancel-and-replace is not double counted).

Disabling records `StrategyDisabled`, then moves the strategy to HALTED in the `TradingModes` (so a
`ModeGate` in front denies its orders; the guard denies them too), and queues the `on_disable`
callback, which the engine wires to the strategy manager (pause and cancel its open orders).
The callback runs in `run_pending`, which the engine calls once the bar is processed: a limit can
trip inside a broker's fill report, where cancelling other orders is not safe. Other strategies are
untouched. Only an authorised user re-enables the strategy (`enable`, i.e. `TradingModes.resume`).

Configuration is the ``[runaway]`` TOML table; ``[runaway.strategy.<id>]`` overrides any key for
one strategy::

    [runaway]
    max_orders = 50
    order_window_s = 1
    max_fills = 100
    fill_window_s = 60

    [runaway.strategy.market_maker]
    max_orders = 500
"""
from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from qlcore.events.facts import StrategyDisabled, TradingModeChanged
from qlcore.events.types import Event, OrderFilled
from qlcore.model.enums import OrderSide
from qlcore.model.money import ZERO, canonical, to_decimal
from qlcore.model.orders import Order
from qlcore.model.state import TradingState
from qlcore.risk.hook import ChainPart, RiskHook
from qlcore.risk.modes import ACCOUNT, UNWIND_TAGS, TradingMode, TradingModes, _toml_table

NS_PER_S = 1_000_000_000

_KEYS: dict[str, str] = {
    "max_orders": "orders of one strategy per order window (off if unset)",
    "order_window_s": "order window, seconds (default 1)",
    "max_fills": "fills of one strategy per fill window (off if unset)",
    "fill_window_s": "fill window, seconds (default 1)",
}


class RunawayConfigError(ValueError):
    """An unknown key or a bad value in the ``[runaway]`` table."""


@dataclass(frozen=True, slots=True)
class RunawayLimits:
    """The limits of one strategy."""

    max_orders: int | None = None
    order_window_s: Decimal = Decimal(1)
    max_fills: int | None = None
    fill_window_s: Decimal = Decimal(1)

    @property
    def order_window_ns(self) -> int:
        return int(self.order_window_s * NS_PER_S)

    @property
    def fill_window_ns(self) -> int:
        return int(self.fill_window_s * NS_PER_S)


@dataclass(frozen=True, slots=True)
class RunawayConfig:
    """Limits for every strategy (`default`) and per-strategy overrides (whole `RunawayLimits`)."""

    default: RunawayLimits = RunawayLimits()
    strategies: Mapping[str, RunawayLimits] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not isinstance(self.strategies, MappingProxyType):
            object.__setattr__(self, "strategies", MappingProxyType(dict(self.strategies)))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunawayConfig:
        """Build from the contents of the ``[runaway]`` table."""
        body = dict(values)
        strategies = body.pop("strategy", {})
        base = _parse("runaway", body)
        if not isinstance(strategies, Mapping):
            raise RunawayConfigError(f"runaway config [strategy]: expected a table of strategies, got {strategies!r}")
        own = {sid: RunawayLimits(**{**base, **_parse(f"runaway.strategy.{sid}", b)}) for sid, b in strategies.items()}
        return cls(RunawayLimits(**base), own)

    @classmethod
    def from_toml(cls, source: str | Path) -> RunawayConfig:
        """Read the ``[runaway]`` table of a TOML document (text, or a `Path`)."""
        return cls.from_mapping(_toml_table(source, "runaway", RunawayConfigError))

    def for_strategy(self, strategy_id: str) -> RunawayLimits:
        return self.strategies.get(strategy_id, self.default)


def _parse(section: str, values: Any) -> dict[str, Any]:
    where = f"runaway config [{section}]"
    if not isinstance(values, Mapping):
        raise RunawayConfigError(f"{where}: expected a table, got {values!r}")
    unknown = sorted(set(values) - set(_KEYS))
    if unknown:
        valid = "; ".join(f"{k} ({h})" for k, h in _KEYS.items())
        raise RunawayConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {valid}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name.startswith("max_"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RunawayConfigError(f"{where} {name}: expected a whole number >= 1, got {value!r}")
            out[name] = value
        else:
            try:
                number = None if isinstance(value, bool) else to_decimal(value)
            except ValueError:
                number = None
            if number is None or number <= 0:
                raise RunawayConfigError(f"{where} {name}: expected a number of seconds > 0, got {value!r}")
            out[name] = number
    return out


class _Intent:
    """A declared parent order and the child orders sent for it."""

    __slots__ = ("done", "open", "quantity", "side")

    def __init__(self, side: OrderSide, quantity: Decimal) -> None:
        self.side = side
        self.quantity = quantity
        self.done = ZERO  # filled quantity of children that are no longer open
        self.open: list[Order] = []

    def committed(self) -> Decimal:
        still = []
        for child in self.open:
            if child.is_open:
                still.append(child)
            else:
                self.done += child.filled_quantity
        self.open = still
        return self.done + sum((c.quantity for c in still), ZERO)


class RunawayGuard(ChainPart):
    """`RiskHook`: runaway limits per strategy, then `inner` (see the module docstring).

    Parameters
    ----------
    modes
        Where a disabled strategy goes HALTED, whose `emit` records `StrategyDisabled`, and whose
        authorised users may re-enable it.
    inner
        The next hook when the guard is used alone; None inside a `RiskChain` (which calls `deny`
        and `let_through` itself).
    config
        The limits.
    on_disable
        Called as ``on_disable(strategy_id, reason)`` from `run_pending` (the engine pauses the
        strategy and cancels its open orders there).
    """

    def __init__(
        self,
        modes: TradingModes,
        inner: RiskHook | None = None,
        config: RunawayConfig | None = None,
        *,
        on_disable: Callable[[str, str], object] | None = None,
        actor: str = "runaway-protection",
    ) -> None:
        self.modes = modes
        self.inner = inner
        self.config = config or RunawayConfig()
        self.on_disable = on_disable
        self.actor = actor
        self.disabled: dict[str, str] = {}  # strategy id -> why
        self.events: list[StrategyDisabled] = []
        self._orders: dict[str, deque[int]] = {}
        self._fills: dict[str, deque[int]] = {}
        self._intents: dict[tuple[str, str], _Intent] = {}
        self._pending: list[tuple[str, str]] = []
        modes.listeners.append(self._on_mode)

    # --- intents ---------------------------------------------------------------------------------
    def declare_intent(self, strategy_id: str, symbol: str, quantity: Decimal | int | str) -> None:
        """The strategy means to trade `quantity` of `symbol` in all (> 0 buy, < 0 sell) from now on."""
        qty = to_decimal(quantity)
        if not qty:
            raise ValueError(f"intent of strategy {strategy_id} in {symbol}: quantity must not be zero")
        side = OrderSide.BUY if qty > 0 else OrderSide.SELL
        self._intents[(strategy_id, symbol)] = _Intent(side, abs(qty))

    def clear_intent(self, strategy_id: str, symbol: str) -> None:
        self._intents.pop((strategy_id, symbol), None)

    def intent_used(self, strategy_id: str, symbol: str) -> Decimal:
        """Quantity of the intent taken by child orders (filled, or still open)."""
        intent = self._intents.get((strategy_id, symbol))
        if intent is None:
            raise KeyError(f"no intent declared for strategy {strategy_id} in {symbol}")
        return intent.committed()

    # --- the hook --------------------------------------------------------------------------------
    def let_through(self, order: Order) -> None:
        """The order passed the whole chain: a child of a declared intent counts against it."""
        intent = self._intents.get((order.strategy_id, order.symbol))
        if intent is not None and order.side is intent.side:
            intent.open.append(order)

    def deny(self, order: Order, state: TradingState) -> str | None:
        """The runaway limits' verdict alone (every order that reaches it counts in its window)."""
        sid = order.strategy_id
        if self.modes.unwinding and order.tags in UNWIND_TAGS:
            # an operator's or the kill switch's flattening (the ModeGate in front of this hook lets
            # only closing ones through): a disabled strategy's positions must be closable
            return None
        why = self.disabled.get(sid)
        if why is not None:
            return (f"strategy {sid} is disabled by runaway protection ({why}); an authorised user must re-enable it "
                    f"(qlcore resume-trading --strategy {sid})")
        limits = self.config.for_strategy(sid)
        if limits.max_orders is not None:
            sent = _window(self._orders, sid, order.ts_init, limits.order_window_ns)
            if len(sent) >= limits.max_orders:
                return self._disable(
                    sid, order.ts_init, "max_orders",
                    f"more than {limits.max_orders} orders within {canonical(limits.order_window_s)}s "
                    f"(order {order.order_id} would be number {len(sent) + 1})",
                )
            sent.append(order.ts_init)
        intent = self._intents.get((sid, order.symbol))
        if intent is not None and order.side is intent.side:
            used = intent.committed()
            if used + order.quantity > intent.quantity:
                return self._disable(
                    sid, order.ts_init, "intent",
                    f"child order {order.order_id} {order.side.value} {canonical(order.quantity)} {order.symbol} "
                    f"would take its children to {canonical(used + order.quantity)}, beyond its declared intent "
                    f"{order.side.value} {canonical(intent.quantity)}",
                )
        return None

    def on_fill(self, fill: OrderFilled) -> None:
        """A fill listener for the kernel: counts the strategy's fills in its window."""
        sid = fill.strategy_id
        limits = self.config.for_strategy(sid)
        if limits.max_fills is None or sid in self.disabled:
            return
        fills = _window(self._fills, sid, fill.ts, limits.fill_window_ns)
        fills.append(fill.ts)
        if len(fills) > limits.max_fills:
            self._disable(
                sid, fill.ts, "max_fills",
                f"{len(fills)} fills within {canonical(limits.fill_window_s)}s, more than {limits.max_fills}",
            )

    # --- disabling and enabling ------------------------------------------------------------------
    def _disable(self, sid: str, ts: int, rule: str, what: str) -> str:
        reason = f"runaway protection {rule}: strategy {sid}: {what}"
        event = StrategyDisabled(ts, sid, self.actor, json.dumps({"rule": rule, "reason": reason}, sort_keys=True))
        self.modes.emit(event)  # the record first
        self.apply(event)
        self.modes.restrict(sid, TradingMode.HALTED, reason=reason, actor=self.actor)
        self._pending.append((sid, reason))
        return reason

    def apply(self, event: StrategyDisabled) -> None:
        """Fold a recorded `StrategyDisabled` (also how a restart rebuilds the disabled set)."""
        try:
            reason = json.loads(event.details)["reason"]
        except (ValueError, KeyError, TypeError):
            reason = event.details
        self.disabled[event.strategy_id] = reason
        self.events.append(event)

    def replay(self, events: Iterable[Event]) -> RunawayGuard:
        """Fold the `StrategyDisabled` and re-enabling `TradingModeChanged` events among `events`."""
        for event in events:
            if isinstance(event, StrategyDisabled):
                self.apply(event)
            elif isinstance(event, TradingModeChanged):
                self._on_mode(event)
        return self

    def run_pending(self) -> list[str]:
        """Call `on_disable` for the strategies disabled since the last call; return their ids."""
        pending, self._pending = self._pending, []
        if self.on_disable is not None:
            for sid, reason in pending:
                self.on_disable(sid, reason)
        return [sid for sid, _ in pending]

    def enable(self, strategy_id: str, actor: str, reason: str = "") -> TradingModeChanged:
        """Re-enable a disabled strategy: an authorised user only (its mode goes back to ACTIVE)."""
        if strategy_id not in self.disabled:
            raise ValueError(f"strategy {strategy_id} is not disabled by runaway protection")
        return self.modes.resume(strategy_id, actor, reason or f"re-enabled by {actor}")

    def _on_mode(self, event: TradingModeChanged) -> None:
        if event.new == TradingMode.ACTIVE.value and event.scope != ACCOUNT:
            # an authorised user took the strategy back: its counts start afresh
            self.disabled.pop(event.scope, None)
            self._orders.pop(event.scope, None)
            self._fills.pop(event.scope, None)


def _window(windows: dict[str, deque[int]], sid: str, ts: int, window_ns: int) -> deque[int]:
    times = windows.get(sid)
    if times is None:
        times = windows[sid] = deque()
    start = ts - window_ns
    while times and times[0] <= start:
        times.popleft()
    return times
