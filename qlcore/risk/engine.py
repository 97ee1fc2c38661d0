"""The risk engine: the pre-trade chain between a strategy and the broker.

`RiskEngine` is a `RiskHook`: give it to `Kernel(risk=...)` or `BacktestEngine(risk=...)`. For each
order it brings its book up to date with the trading state, resolves the limits in force for the
order's strategy and instrument (cached until the limits change), and runs the enabled rules in a
fixed order (`ALL_RULES`: compliance first, then risk). The first denial wins; the kernel turns its
reason into an `OrderDenied` event. An approved order is counted as open from that moment.

Reference prices come from `set_reference_price` / `on_bar` / `on_marks` (a run mode's price feed;
in a backtest, add `risk.price_feed()` as the first strategy), else from the state's marks, else
from the instrument's last fill.

Wiring: `RiskEngine(config)` as the kernel's risk hook is enough; it then follows the state by
looking at its open orders on each check. `attach(kernel)` lets it follow the kernel's bus instead,
which takes that work out of the order path (the paper and live engines should do this).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from qlcore.events.types import (
    AccountFunded,
    Event,
    MarksUpdated,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    RiskLimitsChanged,
)
from qlcore.model.market import Bar
from qlcore.model.orders import Order
from qlcore.model.state import TradingState
from qlcore.risk.base import Denial, RiskContext, Rule
from qlcore.risk.book import RiskBook
from qlcore.risk.calendar import SessionCalendar
from qlcore.risk.config import FIELDS, ResolvedLimits, RiskConfig
from qlcore.risk.rules import ALL_RULES

if TYPE_CHECKING:
    from qlcore.engine.kernel import Kernel
    from qlcore.strategies.base import Strategy

# the order events that can change what the book counts (fills, and the end of an open order)
_BOOK_EVENTS = (OrderFilled, OrderCanceled, OrderExpired, OrderRejected)



@dataclass(frozen=True, slots=True)
class RiskDecision:
    """One order's passage through the chain: the rules that ran, in order, and the denial if any."""

    ts: int
    order_id: str
    strategy_id: str
    symbol: str
    passed: bool
    rules: tuple[str, ...]
    denial: Denial | None = None


class RiskEngine:
    """Pre-trade risk and compliance checks (see the module docstring)."""

    def __init__(self, config: RiskConfig | Mapping[str, Any] | None = None, *, rules: Iterable[Rule] = ALL_RULES) -> None:
        config = _as_config(config)
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.book = RiskBook()
        self.ctx = RiskContext(self.book)
        self._calendars: dict[tuple[str, str, str], SessionCalendar] = {}
        self._load_calendars(config)
        self.config = config
        self._resolved: dict[tuple[str, str], ResolvedLimits] = {}
        self._deployed: dict[str, dict[str, Decimal]] = {}  # strategy id -> limits of its deployment
        self._track_capital()
        # listeners' return values are ignored (the audit recorder returns its entry)
        self.decision_listeners: list[Callable[[RiskDecision], object]] = []
        self.event_listeners: list[Callable[[Event], object]] = []
        self.changes: list[RiskLimitsChanged] = []
        self.checked = 0
        self.passed = 0
        self.denials: dict[str, int] = {}

    # --- the hook ---------------------------------------------------------------------------------
    def check(self, order: Order, state: TradingState) -> str | None:
        """`RiskHook`: None to let the order go, else the reason (rule, limit, value)."""
        denial = self.evaluate(order, state)
        return None if denial is None else denial.reason

    def evaluate(self, order: Order, state: TradingState) -> Denial | None:
        """Run the chain on `order`; return the first denial, or None after counting the order as sent."""
        book = self.book
        if state is not book.state:
            book.bind(state)
        else:
            book.sync()
        ts = order.ts_init
        if ts >= book.day_end:
            book.roll(ts)
        key = (order.strategy_id, order.symbol)
        lim = self._resolved.get(key)
        if lim is None:
            lim = self._resolve(*key)
        ctx = self.ctx
        ctx.key = key
        ctx.state = state
        ctx.lim = lim
        ctx.ts = ts
        ref = book.prices.get(order.symbol)
        if ref is None:
            ref = state.marks.get(order.symbol)
        ctx.ref = ref
        px = order.price
        if px is None:
            px = order.trigger_price if order.trigger_price is not None else ref
        ctx.px = px
        ctx.notional = None if px is None else order.quantity * px
        ctx.after = None
        if lim.max_messages_per_window is not None:
            book.messages.append(ts)
        self.checked += 1
        for rule in lim.chain:
            denial = rule.check(order, ctx)
            if denial is not None:
                self.denials[rule.name] = self.denials.get(rule.name, 0) + 1
                if self.decision_listeners:
                    ran = lim.rule_names[: lim.chain.index(rule) + 1]
                    self._tell(RiskDecision(ts, order.order_id, order.strategy_id, order.symbol, False, ran, denial))
                return denial
        self._approve(order, ctx, lim)
        return None

    def _approve(self, order: Order, ctx: RiskContext, lim: ResolvedLimits) -> None:
        book = self.book
        ts = ctx.ts
        book.track(order, ctx.px)
        if lim.max_orders_per_window is not None:
            sent = book.sent_by_strategy.get(order.strategy_id)
            if sent is None:
                sent = book.sent_by_strategy[order.strategy_id] = deque()
            sent.append(ts)
        if lim.max_account_orders_per_window is not None:
            book.sent.append(ts)
        if lim.duplicate_window_ns is not None:
            recent = book.recent.get(ctx.key)
            if recent is None:
                recent = book.recent[ctx.key] = deque()
            recent.append((ts, order))
        book.orders_today += 1
        self.passed += 1
        if self.decision_listeners:
            self._tell(RiskDecision(ts, order.order_id, order.strategy_id, order.symbol, True, lim.rule_names))

    def _tell(self, decision: RiskDecision) -> None:
        for listener in self.decision_listeners:
            listener(decision)

    # --- following a kernel --------------------------------------------------------------------
    def attach(self, kernel: Kernel) -> None:
        """Follow `kernel`'s state through its bus: fills, cancels and deposits are taken in as they
        are published, so a check no longer looks at every open order. Without it (a backtest
        that does not expose its kernel) the book polls its open orders on each check instead."""
        book = self.book
        book.bind(kernel.state)
        book.attached = True
        bus = kernel.bus
        for event_type in _BOOK_EVENTS:
            bus.subscribe(self._on_order_event, event_type)
        bus.subscribe(self._on_funded, AccountFunded)
        bus.subscribe(self.on_marks, MarksUpdated)  # type: ignore[arg-type]

    def _on_order_event(self, event: Event) -> None:
        book = self.book
        t = book.tracked.get(event.order_id)  # type: ignore[attr-defined]
        if t is not None:
            book.update(t)
        book.settle()  # a fill of an order no longer tracked shows as unexplained cash: rebuild

    def _on_funded(self, event: Event) -> None:
        self.book.settle()

    # --- limits -----------------------------------------------------------------------------------
    def deploy(self, strategy_id: str, limits: Mapping[str, Decimal]) -> None:
        """The limits a strategy was deployed with (`capital`, `max_order_quantity`, `max_position`,
        ...): in force beside the configured ones, with the same meaning; where both set a limit, the
        tighter applies."""
        unknown = sorted(set(limits) - set(FIELDS))
        if unknown:
            raise ValueError(f"strategy {strategy_id}: unknown limit(s) {unknown}; valid: {sorted(FIELDS)}")
        self._deployed[strategy_id] = dict(limits)
        for key in [k for k in self._resolved if k[0] == strategy_id]:
            del self._resolved[key]
        self._track_capital()

    def _track_capital(self) -> None:
        """The book keeps per-strategy exposure only once some strategy has a capital limit."""
        config = self.config
        if (
            config.account.capital is not None
            or any(lim.capital is not None for lim in config.strategies.values())
            or any("capital" in own for own in self._deployed.values())
        ):
            self.book.track_strategies()

    def _resolve(self, strategy_id: str, symbol: str) -> ResolvedLimits:
        lim = self.config.resolve(strategy_id, symbol)
        for name, value in self._deployed.get(strategy_id, {}).items():
            current = getattr(lim, name)
            if current is None or value < current:
                setattr(lim, name, value)
        if lim.calendar is not None:
            lim.session = self._calendars[(lim.calendar, lim.calendar_mode, lim.calendar_start)]
        lim.chain = tuple(rule for rule in self.rules if rule.enabled(lim))
        lim.rule_names = tuple(rule.name for rule in lim.chain)
        self._resolved[(strategy_id, symbol)] = lim
        return lim

    def _load_calendars(self, config: RiskConfig) -> None:
        start = config.account.calendar_start or "1990-01-01"
        levels = [config.account, *config.instruments.values()]
        for lim in levels:
            name = lim.calendar or config.account.calendar
            if name is None:
                continue
            mode = lim.calendar_mode or config.account.calendar_mode or "session"
            key = (name, mode, start)
            if key not in self._calendars:
                self._calendars[key] = SessionCalendar(name, mode, start)

    def limits_for(self, strategy_id: str, symbol: str) -> ResolvedLimits:
        """The limits in force for one strategy in one instrument, and the rules they enable."""
        return self._resolved.get((strategy_id, symbol)) or self._resolve(strategy_id, symbol)

    def set_limits(
        self, config: RiskConfig | Mapping[str, Any], *, actor: str, ts: int, reason: str = ""
    ) -> RiskLimitsChanged:
        """Replace every limit from the next order on. The `RiskLimitsChanged` event goes to the
        event listeners (store, audit) first; if one of them fails, the old limits stay."""
        config = _as_config(config)
        self._load_calendars(config)  # an unknown calendar fails here, before anything changes
        event = RiskLimitsChanged(ts, actor, config.to_json(), reason)
        for listener in self.event_listeners:
            listener(event)
        self.apply(event)
        return event

    def apply(self, event: RiskLimitsChanged) -> None:
        """Fold a stored `RiskLimitsChanged` (restart, replay): the limits become the event's."""
        config = RiskConfig.from_json(event.config)
        self._load_calendars(config)
        self.config = config
        self._resolved.clear()
        self._track_capital()
        self.changes.append(event)

    # --- prices -----------------------------------------------------------------------------------
    def set_reference_price(self, symbol: str, price: Decimal, ts: int) -> None:
        """The instrument's reference (last trade) price at engine time `ts`."""
        self.book.set_price(symbol, price, ts)

    def on_bar(self, bar: Bar) -> None:
        """A bar's close becomes the reference price."""
        self.book.set_price(bar.symbol, Decimal(float.__repr__(bar.close)), bar.ts)

    def on_marks(self, event: MarksUpdated) -> None:
        for symbol, price in event.marks:
            self.book.set_price(symbol, price, event.ts)

    def price_feed(self, strategy_id: str = "risk-prices") -> Strategy:
        """A strategy that only feeds bar closes to this engine: add it to a backtest first."""
        from qlcore.risk.feed import ReferencePriceFeed

        return ReferencePriceFeed(self, strategy_id=strategy_id)

    # --- reporting --------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """Orders checked and passed, and denials per rule, risk and compliance apart."""
        kinds = {rule.name: rule.kind for rule in self.rules}
        out: dict[str, Any] = {"checked": self.checked, "passed": self.passed, "risk": {}, "compliance": {}}
        for name, count in sorted(self.denials.items()):
            out[kinds.get(name, "risk")][name] = count
        return out


def _as_config(config: RiskConfig | Mapping[str, Any] | None) -> RiskConfig:
    if config is None:
        return RiskConfig()
    if isinstance(config, RiskConfig):
        return config
    return RiskConfig.from_mapping(config)
