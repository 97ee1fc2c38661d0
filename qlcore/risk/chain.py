"""The one pre-trade chain of every clock: lifecycle -> trading modes -> runaway -> rules.

`RiskChain` is built once, from `RiskSettings` (one TOML file), and handed to the `Kernel`, which
binds it (`bind`), as it binds its broker. The backtest, the paper engine and any live engine use
the same class with the same settings, so they deny the same orders for the same stream. Its parts
are held by name, never wrapped around each other:

1. `lifecycle` (`Lifecycle`): an order of a deployed strategy that is not RUNNING is refused; the
   strategy manager tells it each strategy's state. Orders closing positions on someone else's
   authority pass (the manager's flattening, the kill switch's unwinding).
2. `gate` (`ModeGate` over `modes`): the account's and the strategy's trading modes.
3. `runaway` (`RunawayGuard`): order and fill floods, children beyond a declared intent.
4. `rules` (`RiskEngine`, or any `RiskHook`): the pre-trade rules of `qlcore.risk.rules`, the
   limits a strategy was deployed with (its capital among them) included.

The first refusal wins. Parts that keep an index of orders let through (`gate`, `runaway`) are told
only once the whole chain has passed the order.

Account buying power: unless the settings say otherwise, the account is a cash account
(``buying_power = true``: buys within cash not committed to open buys, no leverage). Set
``leverage = L`` for a margin account (gross exposure within L x equity), or ``buying_power = false``
to switch the cash check off.
"""
from __future__ import annotations

import getpass
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qlcore.model.market import Bar
from qlcore.model.orders import Order
from qlcore.model.state import TradingState
from qlcore.risk.config import RiskConfig, RiskConfigError
from qlcore.risk.engine import RiskEngine
from qlcore.risk.hook import RiskHook
from qlcore.risk.modes import UNWIND_TAGS, ModeConfig, ModeGate, TradingModes
from qlcore.risk.monitors import MonitorConfig
from qlcore.risk.runaway import RunawayConfig, RunawayGuard

if TYPE_CHECKING:
    from qlcore.engine.kernel import Kernel

_RUNNING = "RUNNING"
SECTIONS = ("account", "strategy", "instrument", "modes", "monitors", "runaway")  # of a risk TOML file


def _default_modes() -> ModeConfig:
    return ModeConfig(frozenset({"admin", getpass.getuser()}))


@dataclass(frozen=True)
class RiskSettings:
    """Every risk setting, from one TOML file: pre-trade limits (``[account]``, ``[strategy.*]``,
    ``[instrument.*]``), who may loosen a mode (``[modes]``), the real-time monitors (``[monitors]``,
    not part of the chain) and runaway protection (``[runaway]``)."""

    limits: RiskConfig = field(default_factory=lambda: RiskConfig.from_mapping({"account": {"buying_power": True}}))
    modes: ModeConfig = field(default_factory=_default_modes)
    monitors: MonitorConfig = field(default_factory=MonitorConfig)
    runaway: RunawayConfig = field(default_factory=RunawayConfig)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RiskSettings:
        """Without ``[modes]``, the operator running the engine and the user "admin" are authorised;
        without ``buying_power`` or ``leverage`` in ``[account]``, the account is a cash account."""
        body = dict(values)
        unknown = sorted(set(body) - set(SECTIONS))
        if unknown:
            raise RiskConfigError(f"risk config: unknown section(s) {unknown}; valid sections: {', '.join(SECTIONS)}")
        modes = body.pop("modes", None)
        monitors = body.pop("monitors", {})
        runaway = body.pop("runaway", {})
        account = body.get("account", {})
        if isinstance(account, Mapping) and "buying_power" not in account and "leverage" not in account:
            body["account"] = {**account, "buying_power": True}
        return cls(
            RiskConfig.from_mapping(body),
            ModeConfig.from_mapping(modes) if modes is not None else _default_modes(),
            MonitorConfig.from_mapping(monitors),
            RunawayConfig.from_mapping(runaway),
        )

    @classmethod
    def from_file(cls, path: Path | None) -> RiskSettings:
        """Read a risk TOML file (None: a cash account, nothing else). A file that cannot be read,
        is not TOML, or has a bad section, key or value raises `RiskConfigError` naming the file."""
        if path is None:
            return cls.from_mapping({})
        try:
            text = path.read_text()
        except OSError as exc:
            raise RiskConfigError(f"limits file {path}: cannot be read: {exc.strerror or exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RiskConfigError(f"limits file {path}: not valid TOML: {exc}") from None
        try:
            return cls.from_mapping(data)
        except ValueError as exc:  # the loaders' errors name the section, the key and the reason
            raise RiskConfigError(f"limits file {path}: {exc}") from None


class Lifecycle:
    """The lifecycle part: orders of a deployed strategy pass only while it is RUNNING.

    The strategy manager reports every state (`set_state`) and wraps its own flattening orders in
    `closing`. Strategies it does not manage (manual orders, a backtest's strategies) always pass.
    """

    def __init__(self) -> None:
        self._not_running: dict[str, str] = {}  # strategy id -> its state, for those not RUNNING
        self._closing: set[str] = set()

    def set_state(self, strategy_id: str, state: str) -> None:
        if state == _RUNNING:
            self._not_running.pop(strategy_id, None)
        else:
            self._not_running[strategy_id] = state

    @contextmanager
    def closing(self, strategy_id: str) -> Iterator[None]:
        """While open, the strategy's orders pass whatever its state (they close its positions)."""
        self._closing.add(strategy_id)
        try:
            yield
        finally:
            self._closing.discard(strategy_id)

    def deny(self, order: Order) -> str | None:
        sid = order.strategy_id
        state = self._not_running.get(sid)
        if state is None or sid in self._closing:
            return None
        return f"strategy {sid} is {state}: new orders are refused"


class RiskChain:
    """`RiskHook`: lifecycle -> trading modes -> runaway -> rules (see the module docstring).

    Parameters
    ----------
    settings
        The limits, mode, monitor and runaway settings (defaults: a cash account, nothing else).
    rules
        The last part; by default a `RiskEngine` over ``settings.limits``.
    """

    modes: TradingModes
    gate: ModeGate
    runaway: RunawayGuard

    def __init__(self, settings: RiskSettings | None = None, *, rules: RiskHook | None = None) -> None:
        self.settings = settings or RiskSettings()
        self.lifecycle = Lifecycle()
        self.rules: RiskHook = rules if rules is not None else RiskEngine(self.settings.limits)
        # called as (strategy id, reason) when runaway protection disables a strategy (after the bar)
        self.disable_listeners: list[Callable[[str, str], object]] = []
        self._bound = False
        # the last bar of each symbol not yet handed to the rules (see `on_bar`)
        self._bars: dict[str, Bar] = {}
        self._rules_on_bar: Callable[[Bar], object] | None = getattr(self.rules, "on_bar", None)
        book = getattr(self.rules, "book", None)
        self._day_end: Callable[[], int] = (lambda: book.day_end) if book is not None else (lambda: 0)

    @property
    def engine(self) -> RiskEngine:
        """The rules part as a `RiskEngine` (limits, decisions, reports); TypeError if it is another hook."""
        if not isinstance(self.rules, RiskEngine):
            raise TypeError(f"this chain's rules are a {type(self.rules).__name__}, not a RiskEngine")
        return self.rules

    def bind(self, kernel: Kernel) -> None:
        """Called once by the kernel that owns the chain: the parts that record events or follow the
        kernel's state are made here."""
        if self._bound:
            raise RuntimeError("this RiskChain is already bound to a kernel: build one chain per kernel")
        self._bound = True
        self.modes = TradingModes.for_kernel(kernel, self.settings.modes)
        self.gate = ModeGate(self.modes)
        self.runaway = RunawayGuard(self.modes, config=self.settings.runaway, on_disable=self._disabled)
        kernel.fill_listeners.append(self.runaway.on_fill)
        attach = getattr(self.rules, "attach", None)
        if callable(attach):
            attach(kernel)

    # --- the hook ---------------------------------------------------------------------------------
    def check(self, order: Order, state: TradingState) -> str | None:
        if self._bars:
            self._hand_bars()
        if not (self.modes.unwinding and order.tags in UNWIND_TAGS):  # the kill switch's, an operator's flatten
            reason = self.lifecycle.deny(order)
            if reason is not None:
                return reason
        reason = self.gate.deny(order, state)
        if reason is not None:
            return reason
        reason = self.runaway.deny(order, state)
        if reason is not None:
            return reason
        reason = self.rules.check(order, state)
        if reason is None:
            self.gate.let_through(order)
            self.runaway.let_through(order)
        return reason

    # --- the clock ----------------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> None:
        """A bar's close becomes the rules' reference price (before the strategies see the bar).

        Most bars meet no order, so the bar is only kept, the symbol's last: the rules take the kept
        bars at the next check, or when a new day starts (so the day's P&L baseline is taken at the
        previous day's last prices, as if each bar had been handed at once)."""
        if self._rules_on_bar is None:
            return
        if bar.ts >= self._day_end():
            self._hand_bars()
        self._bars[bar.symbol] = bar

    def _hand_bars(self) -> None:
        on_bar = self._rules_on_bar
        assert on_bar is not None
        bars, self._bars = self._bars, {}
        for bar in bars.values():
            on_bar(bar)

    def after_bar(self) -> list[str]:
        """Once the strategies have seen the bar: strategies runaway protection disabled meanwhile
        are handed to `disable_listeners` (pausing them is not safe inside a fill report)."""
        return self.runaway.run_pending()

    def _disabled(self, strategy_id: str, reason: str) -> None:
        for listener in self.disable_listeners:
            listener(strategy_id, reason)

    def deploy(self, strategy_id: str, limits: Mapping[str, Any]) -> None:
        """A strategy's deployment limits (its `capital` included) go to the rules."""
        deploy = getattr(self.rules, "deploy", None)
        if callable(deploy):
            deploy(strategy_id, limits)
