"""Trading modes: ACTIVE, REDUCING or HALTED, for the whole account and for each strategy.

A mode changes only along `TRANSITIONS`, and every change is a `TradingModeChanged` event (scope,
old, new, reason, actor) recorded *before* the mode changes, so a failing store leaves the mode as
it was. The modes are a fold over those events: `apply` rebuilds them on restart or replay.

Tightening (ACTIVE -> REDUCING -> HALTED) is open to anyone, the monitors and runaway protection
included. Loosening (back to REDUCING or ACTIVE) needs an authorised user from `ModeConfig`: that is
the human acknowledgment of an automatic halt. One exception, `lift`: an automatic cause that has
cleared by itself (a feed that delivers again) may undo its own restriction, and only while it is the
scope's last change; anything another actor did since stays for a person to lift.

`ModeGate` is the `RiskHook` that enforces the modes on new orders; cancels never pass through a
risk hook, so they are never blocked.
"""
from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qlcore.events.facts import TradingModeChanged
from qlcore.events.types import Event
from qlcore.model.enums import OrderSide
from qlcore.model.money import ZERO, canonical
from qlcore.model.orders import Order
from qlcore.model.state import TradingState
from qlcore.risk.hook import ChainPart, RiskHook

if TYPE_CHECKING:
    from qlcore.engine.clock import Clock
    from qlcore.engine.kernel import Kernel

ACCOUNT = "account"  # the scope of the whole account; every other scope is a strategy id
FLATTEN_TAG = "kill-switch"  # the tag of the kill switch's flattening orders
OPERATOR_FLATTEN_TAG = "flatten"  # the tag of the orders of an operator's flatten (or stop --flatten)
# orders with these tags that close a position pass any mode while `TradingModes.unwind` is open: the
# kill switch's flattening, and an operator's flatten of a halted account or strategy
UNWIND_TAGS = frozenset({FLATTEN_TAG, OPERATOR_FLATTEN_TAG})


class TradingMode(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # only orders that reduce a position pass
    HALTED = "HALTED"  # no new orders


M = TradingMode
SEVERITY = {M.ACTIVE: 0, M.REDUCING: 1, M.HALTED: 2}

# (old, new) -> does it need an authorised user? A pair not in the table is not a transition.
TRANSITIONS: dict[tuple[TradingMode, TradingMode], bool] = {
    (M.ACTIVE, M.REDUCING): False,
    (M.ACTIVE, M.HALTED): False,
    (M.REDUCING, M.HALTED): False,  # a worse breach escalates
    (M.REDUCING, M.ACTIVE): True,
    (M.HALTED, M.ACTIVE): True,
    # a halted book may be opened for unwinding only, before full trading comes back
    (M.HALTED, M.REDUCING): True,
}


class ModeError(ValueError):
    """A mode change that the table does not allow, or a bad scope or mode."""


class NotAuthorisedError(PermissionError):
    """An actor outside the configured set asked for a change that needs an authorised user."""

    def __init__(self, actor: str, action: str, authorised: frozenset[str]) -> None:
        who = ", ".join(sorted(authorised)) or "nobody is configured"
        super().__init__(f"actor {actor!r} is not authorised to {action}; authorised users: {who}")
        self.actor, self.action = actor, action


@dataclass(frozen=True, slots=True)
class ModeConfig:
    """Who may loosen a mode: the ``authorised`` user names of the ``[modes]`` TOML table."""

    authorised: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "authorised", frozenset(self.authorised))
        for name in self.authorised:
            if not isinstance(name, str) or not name.strip():
                raise ModeError(f"modes config authorised: expected non-empty user names, got {name!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ModeConfig:
        """Build from the contents of the ``[modes]`` table."""
        unknown = sorted(set(values) - {"authorised"})
        if unknown:
            raise ModeError(f"modes config: unknown key(s) {unknown}; valid keys: ['authorised']")
        users = values.get("authorised", [])
        if not isinstance(users, list):
            raise ModeError(f"modes config authorised: expected a list of user names, got {users!r}")
        return cls(frozenset(users))

    @classmethod
    def from_toml(cls, source: str | Path) -> ModeConfig:
        """Read the ``[modes]`` table of a TOML document (text, or a `Path`)."""
        return cls.from_mapping(_toml_table(source, "modes", ModeError))


class TradingModes:
    """The mode of the account and of each strategy (ACTIVE unless an event said otherwise).

    Parameters
    ----------
    emit
        Records an event before the mode changes (the kernel's `emit`: state, store, bus).
    clock
        Gives the events' timestamps.
    config
        The users allowed to loosen a mode.
    """

    def __init__(self, emit: Callable[[Event], object], clock: Clock, config: ModeConfig | None = None) -> None:
        self.emit = emit
        self.clock = clock
        self.config = config or ModeConfig()
        self.modes: dict[str, TradingMode] = {}
        self.reasons: dict[str, str] = {}
        self.actors: dict[str, str] = {}  # who made each scope's last change
        self.listeners: list[Callable[[TradingModeChanged], object]] = []
        self.unwinding = False  # True while the kill switch sends its flattening orders

    @classmethod
    def for_kernel(cls, kernel: Kernel, config: ModeConfig | None = None) -> TradingModes:
        return cls(kernel.emit, kernel.clock, config)

    # --- reading ---------------------------------------------------------------------------------
    def mode(self, scope: str = ACCOUNT) -> TradingMode:
        return self.modes.get(scope, TradingMode.ACTIVE)

    @property
    def account(self) -> TradingMode:
        return self.modes.get(ACCOUNT, TradingMode.ACTIVE)

    def reason(self, scope: str = ACCOUNT) -> str:
        """Why the scope is in its mode (the reason of its last change)."""
        return self.reasons.get(scope, "")

    def cause(self, scope: str = ACCOUNT) -> str:
        """Who made the scope's last change ("" if none)."""
        return self.actors.get(scope, "")

    def is_authorised(self, actor: str) -> bool:
        return actor in self.config.authorised

    def require_authorised(self, actor: str, action: str) -> None:
        """Raise `NotAuthorisedError` unless `actor` is one of the configured users."""
        if actor not in self.config.authorised:
            raise NotAuthorisedError(actor, action, self.config.authorised)

    # --- changing --------------------------------------------------------------------------------
    def set_mode(self, scope: str, new: TradingMode | str, *, reason: str, actor: str) -> TradingModeChanged:
        """Move `scope` to `new` along `TRANSITIONS`; loosening needs an authorised `actor`."""
        new = _mode(new)
        old = self.mode(scope)
        if not scope:
            raise ModeError("mode scope: expected 'account' or a strategy id, got an empty string")
        needs_user = TRANSITIONS.get((old, new))
        if needs_user is None:
            allowed = sorted(n.value for (o, n) in TRANSITIONS if o is old)
            raise ModeError(f"{scope}: cannot go from {old.value} to {new.value}; allowed: {', '.join(allowed)}")
        if needs_user:
            self.require_authorised(actor, f"move {scope} from {old.value} to {new.value}")
        if not reason:
            raise ModeError(f"{scope}: a mode change needs a reason")
        event = TradingModeChanged(self.clock.now, scope, old.value, new.value, reason, actor)
        self.emit(event)  # the record first: if it fails, the mode stays
        self.apply(event)
        return event

    def restrict(self, scope: str, new: TradingMode | str, *, reason: str, actor: str) -> TradingModeChanged | None:
        """Tighten `scope` to `new` unless it already is at least that strict (then None)."""
        new = _mode(new)
        if SEVERITY[self.mode(scope)] >= SEVERITY[new]:
            return None
        return self.set_mode(scope, new, reason=reason, actor=actor)

    def lift(self, scope: str, *, actor: str, reason: str) -> TradingModeChanged | None:
        """Back to ACTIVE when `actor`, an automatic cause that has cleared, made the scope's last
        change (then no one has tightened or touched it since); otherwise None and the mode stays."""
        old = self.mode(scope)
        if old is TradingMode.ACTIVE or self.actors.get(scope) != actor:
            return None
        if not reason:
            raise ModeError(f"{scope}: a mode change needs a reason")
        event = TradingModeChanged(self.clock.now, scope, old.value, TradingMode.ACTIVE.value, reason, actor)
        self.emit(event)
        self.apply(event)
        return event

    def resume(self, scope: str, actor: str, reason: str = "") -> TradingModeChanged:
        """Back to ACTIVE: an authorised user's command (refused for anyone else, naming them)."""
        self.require_authorised(actor, f"resume trading of {scope}")
        return self.set_mode(scope, TradingMode.ACTIVE, reason=reason or f"resumed by {actor}", actor=actor)

    def apply(self, event: TradingModeChanged) -> None:
        """Fold one recorded change (also how a restart rebuilds the modes)."""
        new = TradingMode(event.new)
        if new is TradingMode.ACTIVE:
            self.modes.pop(event.scope, None)
        else:
            self.modes[event.scope] = new
        self.reasons[event.scope] = event.reason
        self.actors[event.scope] = event.actor
        for listener in self.listeners:
            listener(event)

    def replay(self, events: Iterable[Event]) -> TradingModes:
        """Fold every `TradingModeChanged` among `events`."""
        for event in events:
            if isinstance(event, TradingModeChanged):
                self.apply(event)
        return self

    @contextmanager
    def unwind(self) -> Iterator[None]:
        """While open, orders tagged `FLATTEN_TAG` that reduce a position pass even when HALTED."""
        self.unwinding = True
        try:
            yield
        finally:
            self.unwinding = False


class ModeGate(ChainPart):
    """`RiskHook`: the account's and the order's strategy's modes, then `inner`.

    HALTED denies every new order. REDUCING lets an order through only if it reduces the absolute
    position of its scope (the strategy's position, or the account's net position) in the
    instrument without flipping it, counting the scope's open orders on the same side. The gate
    keeps its own index of the orders it let through (pruned of finished ones as it grows), so that
    count costs O(open orders of the instrument), and only in REDUCING mode. Orders sent before the
    gate was installed are not in the index: install it before trading starts.
    """

    def __init__(self, modes: TradingModes, inner: RiskHook | None = None) -> None:
        self.modes = modes
        self.inner = inner  # None inside a `RiskChain`, which calls `deny` and `let_through` itself
        self._open: dict[str, dict[str, Order]] = {}  # symbol -> order id -> order let through
        self._prune_at: dict[str, int] = {}

    def let_through(self, order: Order) -> None:
        """The order passed the whole chain: index it (it counts as open in REDUCING checks)."""
        symbol = order.symbol
        book = self._open.get(symbol)
        if book is None:
            book = self._open[symbol] = {}
        elif len(book) >= self._prune_at.get(symbol, 64):
            # amortised O(1): prune only once the index has doubled since the last pruning
            self._prune(book)
            self._prune_at[symbol] = max(64, 2 * len(book))
        book[order.order_id] = order

    def deny(self, order: Order, state: TradingState) -> str | None:
        """The modes' verdict alone: None, or why the account's or the strategy's mode refuses it."""
        modes = self.modes
        if not modes.modes:
            return None  # everything ACTIVE: the common case costs one lookup
        sid = order.strategy_id
        if modes.unwinding and order.tags in UNWIND_TAGS:
            # the kill switch's or an operator's flattening orders: they pass any mode, but must close
            # the strategy's position (strategies' positions may offset, so the account's net is no
            # guide here)
            denial = self._reduces(order, state, sid)
            return None if denial is None else f"{order.tags} flattening order refused: {denial}"
        for scope in (ACCOUNT, sid):
            mode = modes.mode(scope)
            if mode is TradingMode.ACTIVE:
                continue
            why = modes.reason(scope)
            name = "account" if scope == ACCOUNT else f"strategy {sid}"
            if mode is TradingMode.HALTED:
                return f"{name} mode HALTED: new orders are denied ({why})"
            denial = self._reduces(order, state, None if scope == ACCOUNT else sid)
            if denial is not None:
                return f"{name} mode REDUCING: only orders that reduce the position pass; {denial} ({why})"
        return None

    def _reduces(self, order: Order, state: TradingState, sid: str | None) -> str | None:
        symbol = order.symbol
        if sid is None:
            position, whose = state.net_position(symbol), f"the account's net position in {symbol}"
        else:
            position, whose = state.position(sid, symbol), f"strategy {sid}'s position in {symbol}"
        sell = order.side is OrderSide.SELL
        pending = self._pending(symbol, sid, order.side)
        after = position - (order.quantity + pending if sell else -(order.quantity + pending))
        # reducing: the position moves towards zero (open orders on the same side included) and
        # does not cross it
        if position and (position > 0) == sell and (after == 0 or (after > 0) == (position > 0)):
            return None
        verb = "increase" if not position or (position > 0) != sell else "flip"
        extra = f" with {canonical(pending)} already open on that side" if pending else ""
        return (
            f"{order.side.value} {canonical(order.quantity)} {symbol}{extra} would {verb} {whose} "
            f"{canonical(position)} -> {canonical(after)}"
        )

    def _pending(self, symbol: str, sid: str | None, side: OrderSide) -> Decimal:
        book = self._open.get(symbol)
        if not book:
            return ZERO
        self._prune(book)
        return sum(
            (o.leaves_quantity for o in book.values() if o.side is side and (sid is None or o.strategy_id == sid)),
            ZERO,
        )

    @staticmethod
    def _prune(book: dict[str, Order]) -> None:
        for oid in [oid for oid, o in book.items() if not o.is_open]:
            del book[oid]


def _mode(value: TradingMode | str) -> TradingMode:
    try:
        return TradingMode(value)
    except ValueError:
        raise ModeError(f"unknown trading mode {value!r}; expected one of {[m.value for m in TradingMode]}") from None


def _toml_table(source: str | Path, table: str, error: type[Exception]) -> Mapping[str, Any]:
    """The `table` of a TOML document (text or a `Path`); an empty mapping if it is absent."""
    text = source.read_text() if isinstance(source, Path) else source
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{table} config: not valid TOML: {exc}") from None
    body = data.get(table, {})
    if not isinstance(body, Mapping):
        raise error(f"{table} config: [{table}] must be a table, got {body!r}")
    return body
