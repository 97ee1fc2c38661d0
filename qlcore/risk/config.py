"""Pre-trade limits: a frozen configuration with account, strategy and instrument levels.

Four levels, from the least to the most specific:

* ``[account]``                           every strategy and instrument of the account
* ``[strategy.<id>]``                     one strategy, every instrument
* ``[instrument.<symbol>]``               one instrument, every strategy
* ``[strategy.<id>.instrument.<symbol>]`` one strategy in one instrument

For an order of strategy S in instrument I, each limit is taken from the most specific level that
sets it: S x I, then I, then S, then the account. Instrument beats strategy because instrument
limits describe the market (price level, liquidity, restrictions) and are usually the tighter
ones; to loosen one for a single strategy, set it in ``[strategy.S.instrument.I]``. A limit that no
level sets is off. Each field may only be set at the levels where it has a meaning (see `FIELDS`);
an unknown key or a key at the wrong level is an error naming the section and the key.
"""
from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from qlcore.model.money import to_decimal

if TYPE_CHECKING:
    from qlcore.risk.calendar import SessionCalendar

NS_PER_S = 1_000_000_000

ACCOUNT, STRATEGY, INSTRUMENT, PAIR = "account", "strategy", "instrument", "strategy_instrument"
_ORDER_LEVELS = frozenset({ACCOUNT, STRATEGY, INSTRUMENT, PAIR})
_STRATEGY_LEVELS = frozenset({ACCOUNT, STRATEGY})
_INSTRUMENT_LEVELS = frozenset({ACCOUNT, INSTRUMENT})
_ACCOUNT_ONLY = frozenset({ACCOUNT})


class RiskConfigError(ValueError):
    """An unknown key, a key at a level where it means nothing, or a bad value in the risk config."""


@dataclass(frozen=True, slots=True)
class Field:
    kind: str  # "decimal" (>= 0), "positive" (> 0), "int" (>= 0), "bool", "str"
    levels: frozenset[str]
    help: str
    choices: tuple[str, ...] = ()


# name -> how it is parsed and where it may be set. The order of this table is the order of `to_dict`.
FIELDS: dict[str, Field] = {
    # --- compliance ------------------------------------------------------------------------
    "restricted": Field("bool", frozenset({INSTRUMENT, PAIR}), "the instrument may not be traded"),
    "max_messages_per_window": Field("int", _ACCOUNT_ONLY, "order requests (denied ones too) per message window"),
    "message_window_s": Field("positive", _ACCOUNT_ONLY, "message limit window, seconds (default 1)"),
    "wash_trade": Field("bool", _ACCOUNT_ONLY, "deny orders that would cross the account's own resting order"),
    "max_order_to_trade_ratio": Field("positive", _ACCOUNT_ONLY, "orders sent today / max(fills today, 1)"),
    # --- risk: the order itself -----------------------------------------------------------------
    "calendar": Field("str", _INSTRUMENT_LEVELS, "exchange_calendars name, e.g. XNYS: trade only in sessions"),
    "calendar_mode": Field(
        "str", _INSTRUMENT_LEVELS, "session: within open..close; date: on a session day (daily bars)",
        ("session", "date"),
    ),
    "calendar_start": Field("str", _ACCOUNT_ONLY, "first date the calendars cover (default 1990-01-01)"),
    "max_order_quantity": Field("decimal", _ORDER_LEVELS, "quantity of one order"),
    "price_collar_bps": Field("decimal", _ORDER_LEVELS, "limit price within this many bps of the reference"),
    "max_order_notional": Field("decimal", _ORDER_LEVELS, "quantity x (limit, trigger or reference) price"),
    "duplicate_window_s": Field("positive", _STRATEGY_LEVELS, "same strategy/symbol/side/qty/price within this window"),
    "max_orders_per_window": Field("int", _STRATEGY_LEVELS, "orders sent by one strategy per order window"),
    "order_window_s": Field("positive", _STRATEGY_LEVELS, "window of max_orders_per_window, seconds (default 1)"),
    "max_account_orders_per_window": Field("int", _ACCOUNT_ONLY, "orders sent by all strategies per account window"),
    "account_order_window_s": Field("positive", _ACCOUNT_ONLY, "window of max_account_orders_per_window (default 1)"),
    "max_open_orders": Field("int", _STRATEGY_LEVELS, "open orders of one strategy"),
    "max_account_open_orders": Field("int", _ACCOUNT_ONLY, "open orders of all strategies"),
    # --- risk: what the order would do to the book -----------------------------------------------
    "allow_short": Field("bool", _ORDER_LEVELS, "may the strategy's position go below zero (default true)"),
    "max_position": Field("decimal", _ORDER_LEVELS, "|the strategy's position in the instrument|, with its open orders"),
    "max_account_position": Field("decimal", _INSTRUMENT_LEVELS, "|all strategies' position in the instrument|"),
    "max_gross_exposure": Field("decimal", _ACCOUNT_ONLY, "sum of |position| x reference price"),
    "max_net_exposure": Field("decimal", _ACCOUNT_ONLY, "|sum of position x reference price|"),
    "buying_power": Field("bool", _ACCOUNT_ONLY, "deny buys whose notional + fee exceed available cash"),
    "fee_bps": Field("decimal", _ACCOUNT_ONLY, "fee estimate for buying power, bps of notional"),
    "min_fee": Field("decimal", _ACCOUNT_ONLY, "minimum fee estimate for buying power"),
    "max_daily_loss": Field("decimal", _ACCOUNT_ONLY, "realized + unrealized P&L since the day's start"),
    "capital": Field(
        "positive", _STRATEGY_LEVELS, "the strategy's capital: its gross exposure (open orders included) at most this"
    ),
    "leverage": Field("positive", _ACCOUNT_ONLY, "margin account: gross exposure at most leverage x equity"),
}

_DEFAULTS: dict[str, Any] = {
    "restricted": False,
    "message_window_s": Decimal(1),
    "wash_trade": False,
    "calendar_mode": "session",
    "calendar_start": "1990-01-01",
    "order_window_s": Decimal(1),
    "account_order_window_s": Decimal(1),
    "allow_short": True,
    "buying_power": False,
    "fee_bps": Decimal(0),
    "min_fee": Decimal(0),
}


def _convert(section: str, name: str, spec: Field, value: Any) -> Any:
    where = f"risk config [{section}] {name}"
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise RiskConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if spec.kind == "str":
        if not isinstance(value, str) or not value:
            raise RiskConfigError(f"{where}: expected a non-empty string, got {value!r}")
        if spec.choices and value not in spec.choices:
            raise RiskConfigError(f"{where}: expected one of {list(spec.choices)}, got {value!r}")
        return value
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise RiskConfigError(f"{where}: expected a whole number, got {value!r}")
        if value < 0:
            raise RiskConfigError(f"{where}: must be >= 0, got {value}")
        return value
    if isinstance(value, bool):
        raise RiskConfigError(f"{where}: expected a number, got {value!r}")
    try:
        number = to_decimal(value)
    except ValueError as exc:
        raise RiskConfigError(f"{where}: {exc}") from None
    if number < 0 or (spec.kind == "positive" and number == 0):
        raise RiskConfigError(f"{where}: must be {'> 0' if spec.kind == 'positive' else '>= 0'}, got {number}")
    return number


def _parse_limits(section: str, level: str, values: Mapping[str, Any]) -> Limits:
    if not isinstance(values, Mapping):
        raise RiskConfigError(f"risk config [{section}]: expected a table of limits, got {values!r}")
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise RiskConfigError(
            f"risk config [{section}]: unknown key(s) {unknown}; valid keys: {sorted(FIELDS)}"
        )
    out = {}
    for name, value in values.items():
        spec = FIELDS[name]
        if level not in spec.levels:
            raise RiskConfigError(
                f"risk config [{section}] {name}: cannot be set per {level.replace('_', ' x ')}; "
                f"allowed in: {sorted(spec.levels)}"
            )
        out[name] = _convert(section, name, spec, value)
    return Limits(**out)


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits set at one level. `None` means "not set here": a less specific level decides."""

    restricted: bool | None = None
    max_messages_per_window: int | None = None
    message_window_s: Decimal | None = None
    wash_trade: bool | None = None
    max_order_to_trade_ratio: Decimal | None = None
    calendar: str | None = None
    calendar_mode: str | None = None
    calendar_start: str | None = None
    max_order_quantity: Decimal | None = None
    price_collar_bps: Decimal | None = None
    max_order_notional: Decimal | None = None
    duplicate_window_s: Decimal | None = None
    max_orders_per_window: int | None = None
    order_window_s: Decimal | None = None
    max_account_orders_per_window: int | None = None
    account_order_window_s: Decimal | None = None
    max_open_orders: int | None = None
    max_account_open_orders: int | None = None
    allow_short: bool | None = None
    max_position: Decimal | None = None
    max_account_position: Decimal | None = None
    max_gross_exposure: Decimal | None = None
    max_net_exposure: Decimal | None = None
    buying_power: bool | None = None
    fee_bps: Decimal | None = None
    min_fee: Decimal | None = None
    max_daily_loss: Decimal | None = None
    capital: Decimal | None = None
    leverage: Decimal | None = None

    def items(self) -> list[tuple[str, Any]]:
        """The limits set at this level, in `FIELDS` order."""
        return [(n, v) for n in FIELDS if (v := getattr(self, n)) is not None]


assert [f.name for f in dataclasses.fields(Limits)] == list(FIELDS), "Limits and FIELDS must agree"


class ResolvedLimits:
    """Every limit in force for one (strategy, instrument): what the rules read on each order."""

    __slots__ = (*FIELDS, "strategy_id", "symbol", "order_window_ns", "account_order_window_ns", "duplicate_window_ns",
                 "message_window_ns", "fee_rate", "session", "chain", "rule_names")

    # The slots named by FIELDS, for the type checker (annotations only: slots cannot have class
    # values). Same types as `Limits`, minus `None` where `_DEFAULTS` fills the gap.
    restricted: bool
    max_messages_per_window: int | None
    message_window_s: Decimal
    wash_trade: bool
    max_order_to_trade_ratio: Decimal | None
    calendar: str | None
    calendar_mode: str
    calendar_start: str
    max_order_quantity: Decimal | None
    price_collar_bps: Decimal | None
    max_order_notional: Decimal | None
    duplicate_window_s: Decimal | None
    max_orders_per_window: int | None
    order_window_s: Decimal
    max_account_orders_per_window: int | None
    account_order_window_s: Decimal
    max_open_orders: int | None
    max_account_open_orders: int | None
    allow_short: bool
    max_position: Decimal | None
    max_account_position: Decimal | None
    max_gross_exposure: Decimal | None
    max_net_exposure: Decimal | None
    buying_power: bool
    fee_bps: Decimal
    min_fee: Decimal
    max_daily_loss: Decimal | None
    capital: Decimal | None
    leverage: Decimal | None

    def __init__(self, strategy_id: str, symbol: str, values: Mapping[str, Any]) -> None:
        self.strategy_id = strategy_id
        self.symbol = symbol
        for name in FIELDS:
            setattr(self, name, values.get(name))
        self.order_window_ns = int(self.order_window_s * NS_PER_S)
        self.account_order_window_ns = int(self.account_order_window_s * NS_PER_S)
        self.message_window_ns = int(self.message_window_s * NS_PER_S)
        self.duplicate_window_ns = (
            None if self.duplicate_window_s is None else int(self.duplicate_window_s * NS_PER_S)
        )
        self.fee_rate = self.fee_bps / 10_000
        self.session: SessionCalendar | None = None  # the SessionCalendar of `calendar`, set by the engine
        self.chain: tuple = ()  # the enabled rules, in order, set by the engine
        self.rule_names: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in FIELDS}


def _frozen(mapping: Mapping) -> MappingProxyType:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """All pre-trade limits of an account (see the module docstring for levels and precedence)."""

    account: Limits = Limits()
    strategies: Mapping[str, Limits] = dataclasses.field(default_factory=lambda: _frozen({}))
    instruments: Mapping[str, Limits] = dataclasses.field(default_factory=lambda: _frozen({}))
    strategy_instruments: Mapping[tuple[str, str], Limits] = dataclasses.field(
        default_factory=lambda: _frozen({})
    )

    def __post_init__(self) -> None:
        for name in ("strategies", "instruments", "strategy_instruments"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, _frozen(value))
        for level, limits in (
            (ACCOUNT, {"": self.account}),
            (STRATEGY, self.strategies),
            (INSTRUMENT, self.instruments),
            (PAIR, self.strategy_instruments),
        ):
            for key, lim in limits.items():
                if not isinstance(lim, Limits):
                    raise RiskConfigError(f"risk config {level} {key!r}: expected Limits, got {type(lim).__name__}")
                for name, _ in lim.items():
                    if level not in FIELDS[name].levels:
                        raise RiskConfigError(
                            f"risk config {level} {key!r} {name}: cannot be set per "
                            f"{level.replace('_', ' x ')}; allowed in: {sorted(FIELDS[name].levels)}"
                        )

    # --- building ----------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RiskConfig:
        """Build from the TOML-shaped mapping: ``account``, ``strategy.<id>[.instrument.<sym>]``, ``instrument.<sym>``."""
        unknown = sorted(set(values) - {"account", "strategy", "instrument"})
        if unknown:
            raise RiskConfigError(
                f"risk config: unknown section(s) {unknown}; valid sections: account, strategy, instrument"
            )
        account = _parse_limits("account", ACCOUNT, values.get("account", {}))
        strategies: dict[str, Limits] = {}
        pairs: dict[tuple[str, str], Limits] = {}
        for sid, body in _table("strategy", values.get("strategy", {})).items():
            body = dict(_table(f"strategy.{sid}", body))
            for sym, inner in _table(f"strategy.{sid}.instrument", body.pop("instrument", {})).items():
                pairs[(sid, sym)] = _parse_limits(f"strategy.{sid}.instrument.{sym}", PAIR, inner)
            strategies[sid] = _parse_limits(f"strategy.{sid}", STRATEGY, body)
        instruments = {
            sym: _parse_limits(f"instrument.{sym}", INSTRUMENT, body)
            for sym, body in _table("instrument", values.get("instrument", {})).items()
        }
        return cls(account, strategies, instruments, pairs)

    @classmethod
    def from_toml(cls, source: str | Path) -> RiskConfig:
        """Parse TOML text, or read it from a `Path`."""
        text = source.read_text() if isinstance(source, Path) else source
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RiskConfigError(f"risk config: not valid TOML: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def from_json(cls, text: str) -> RiskConfig:
        return cls.from_mapping(orjson.loads(text))

    # --- reading -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The TOML-shaped mapping (Decimals as strings): `from_mapping(to_dict())` gives an equal config."""

        def flat(lim: Limits) -> dict[str, Any]:
            return {n: (str(v) if isinstance(v, Decimal) else v) for n, v in lim.items()}

        out: dict[str, Any] = {"account": flat(self.account)}
        strategies: dict[str, Any] = {sid: flat(lim) for sid, lim in sorted(self.strategies.items())}
        for (sid, sym), lim in sorted(self.strategy_instruments.items()):
            strategies.setdefault(sid, {}).setdefault("instrument", {})[sym] = flat(lim)
        if strategies:
            out["strategy"] = strategies
        if self.instruments:
            out["instrument"] = {sym: flat(lim) for sym, lim in sorted(self.instruments.items())}
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): the payload of `RiskLimitsChanged`."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS).decode()

    def calendars(self) -> set[str]:
        names = {self.account.calendar} | {lim.calendar for lim in self.instruments.values()}
        return {n for n in names if n}

    def resolve(self, strategy_id: str, symbol: str) -> ResolvedLimits:
        """The limits in force for one strategy in one instrument (most specific level wins)."""
        levels = [
            self.strategy_instruments.get((strategy_id, symbol)),
            self.instruments.get(symbol),
            self.strategies.get(strategy_id),
            self.account,
        ]
        values: dict[str, Any] = {}
        for name in FIELDS:
            for lim in levels:
                if lim is not None and (v := getattr(lim, name)) is not None:
                    values[name] = v
                    break
            else:
                values[name] = _DEFAULTS.get(name)
        return ResolvedLimits(strategy_id, symbol, values)


def _table(section: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RiskConfigError(f"risk config [{section}]: expected a table, got {value!r}")
    return value
