"""Events that record facts without changing trading state: data quality, market conditions,
strategy lifecycle, execution retries, the engine's own life, commands and reconciliation, risk modes.

They live here, registered with the codec, so that any stream can be decoded without importing the
subsystem that wrote it. `TradingState` folds past them (they are kept for audit and for the
subsystems that rebuild their own state from them, such as the strategy manager on restart).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from qlcore.events.types import Event, register
from qlcore.model.market import Bar


class QuarantineKind(StrEnum):
    OUT_OF_ORDER = "out_of_order"
    DUPLICATE = "duplicate"
    OHLC = "ohlc"
    SPIKE = "spike"


# --- market data ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DataQuarantined(Event):
    """A bar withheld from consumers. ``ts`` is the gate's clock, ``bar_ts`` the bar's own;
    ``source`` names the feed. The bar's values are fields of their own so the store's JSON codec
    can carry the event as it is; ``bar`` rebuilds the `Bar`."""

    ts: int
    symbol: str
    kind: QuarantineKind
    reason: str
    bar_ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    source: str = ""

    @classmethod
    def of(cls, ts: int, kind: QuarantineKind, reason: str, bar: Bar, source: str = "") -> DataQuarantined:
        return cls(ts, bar.symbol, kind, reason, *bar[1:], source=source)

    @property
    def bar(self) -> Bar:
        return Bar(self.symbol, self.bar_ts, self.open, self.high, self.low, self.close, self.volume)


@dataclass(frozen=True, slots=True)
class DataGap(Event):
    """``missing`` bars of ``symbol`` between ``last_ts`` and ``next_ts`` never arrived."""

    ts: int
    symbol: str
    last_ts: int
    next_ts: int
    missing: int
    source: str = ""


@dataclass(frozen=True, slots=True)
class FeedStale(Event):
    """Nothing from ``symbol`` since ``last_seen`` (gate clock) for longer than ``limit_ns``."""

    ts: int
    symbol: str
    last_seen: int
    limit_ns: int
    source: str = ""


@dataclass(frozen=True, slots=True)
class FeedResumed(Event):
    """``symbol`` sent again after a `FeedStale`, having been silent ``silent_ns``."""

    ts: int
    symbol: str
    silent_ns: int
    source: str = ""


@dataclass(frozen=True, slots=True)
class PriceLevelReset(Event):
    """After ``spikes`` consecutive spikes, ``close`` was accepted as the new level of ``symbol``."""

    ts: int
    symbol: str
    old_close: float
    close: float
    spikes: int
    source: str = ""


@dataclass(frozen=True, slots=True)
class VolatilityRegimeChanged(Event):
    """``symbol`` moved from regime ``old`` (None: first classification) to ``new`` at ``vol``."""

    ts: int
    symbol: str
    old: str | None
    new: str
    vol: float

# --- strategy lifecycle (`details` is canonical JSON) ---------------------------------------------
@dataclass(frozen=True, slots=True)
class StrategyDeployed(Event):
    ts: int
    strategy_id: str
    actor: str
    details: str = ""


@dataclass(frozen=True, slots=True)
class StrategyPaused(Event):
    ts: int
    strategy_id: str
    actor: str
    details: str = ""


@dataclass(frozen=True, slots=True)
class StrategyResumed(Event):
    ts: int
    strategy_id: str
    actor: str
    details: str = ""


@dataclass(frozen=True, slots=True)
class StrategyStopped(Event):
    ts: int
    strategy_id: str
    actor: str
    details: str = ""


@dataclass(frozen=True, slots=True)
class StrategyFailed(Event):
    """A hook of the strategy raised, or its `on_bar` ran over its time budget: the strategy alone
    stopped (FAILED) until a person stops it. ``details`` (JSON) names the hook, the error and its
    traceback, the orders cancelled and any flattening orders."""

    ts: int
    strategy_id: str
    actor: str
    details: str = ""

# --- execution client: retries, status queries, timeouts -----------------------------------------
@dataclass(frozen=True, slots=True)
class OrderSubmitRetried(Event):
    """Attempt `attempt` failed with a transient error; the next one follows after `delay_ns`."""

    ts: int
    order_id: str
    attempt: int
    error: str
    delay_ns: int


@dataclass(frozen=True, slots=True)
class OrderSubmitAmbiguous(Event):
    """Attempt `attempt` may have reached the venue: the order stays in flight and is never resent."""

    ts: int
    order_id: str
    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class OrderStatusQueried(Event):
    """The venue was asked about an order in flight; `venue_status` is its answer or "ERROR"."""

    ts: int
    order_id: str
    query: int
    venue_status: str
    venue_order_id: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OrderTimedOut(Event):
    """No definite venue status within the order timeout; the order is then reported expired."""

    ts: int
    order_id: str
    reason: str
    queries: int


@dataclass(frozen=True, slots=True)
class OrderCancelRetried(Event):
    ts: int
    order_id: str
    attempt: int
    error: str
    delay_ns: int


@dataclass(frozen=True, slots=True)
class LateVenueReport(Event):
    """A venue report the order can no longer take (after a timeout, or a second acknowledgement)."""

    ts: int
    order_id: str
    report: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StrategyDisabled(Event):
    """Stopped taking orders by the engine itself (runaway protection); only a person re-enables it."""

    ts: int
    strategy_id: str
    actor: str
    details: str = ""


# --- the engine service --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EngineStarted(Event):
    ts: int
    engine_id: str
    mode: str
    pid: int
    details: str = ""


@dataclass(frozen=True, slots=True)
class EngineStopped(Event):
    ts: int
    engine_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class StoreFaulted(Event):
    """The store failed under the engine (`reason`); trading was suspended with `pending` events not
    yet durable (kept, under their sequence numbers, for the next commit)."""

    ts: int
    engine_id: str
    reason: str
    pending: int


@dataclass(frozen=True, slots=True)
class StoreRecovered(Event):
    """The store took the kept events again after `attempts` retries; reconciliation follows."""

    ts: int
    engine_id: str
    attempts: int
    suspended_s: float


@dataclass(frozen=True, slots=True)
class EngineStateRecorded(Event):
    """The engine's trading state hash at a clean stop: the last event it writes, after `EngineStopped`,
    which a replay of the stream must reproduce (the engine's counterpart of `RunFinished`)."""

    ts: int
    engine_id: str
    state_hash: str


@dataclass(frozen=True, slots=True)
class CommandCompleted(Event):
    """The engine's outcome for one command of the command table: accepted, or refused with `reason`."""

    ts: int
    command_id: int
    kind: str
    user: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ReconciliationStarted(Event):
    ts: int
    venue: str
    open_orders: int


@dataclass(frozen=True, slots=True)
class ReconciliationDifference(Event):
    """The store and the venue disagreed about `order_id`; `resolution` says what the engine did."""

    ts: int
    kind: str
    order_id: str
    detail: str
    resolution: str


@dataclass(frozen=True, slots=True)
class ReconciliationPassed(Event):
    ts: int
    venue: str
    checked: int
    differences: int


# --- risk modes ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TradingModeChanged(Event):
    """`scope` ("account" or a strategy id) moved from `old` to `new` (ACTIVE, REDUCING, HALTED)."""

    ts: int
    scope: str
    old: str
    new: str
    reason: str
    actor: str


@dataclass(frozen=True, slots=True)
class LimitBreached(Event):
    """A real-time monitor found `monitor` of `scope` beyond its limit; `value` and `limit` as text."""

    ts: int
    scope: str
    monitor: str
    limit: str
    value: str
    action: str


DATA_EVENTS: tuple[type[Event], ...] = (DataQuarantined, DataGap, FeedStale, FeedResumed, PriceLevelReset)
LIFECYCLE_EVENTS: tuple[type[Event], ...] = (
    StrategyDeployed,
    StrategyPaused,
    StrategyResumed,
    StrategyStopped,
    StrategyDisabled,
    StrategyFailed,
)
EXECUTION_EVENTS: tuple[type[Event], ...] = (
    OrderSubmitRetried,
    OrderSubmitAmbiguous,
    OrderStatusQueried,
    OrderTimedOut,
    OrderCancelRetried,
    LateVenueReport,
)
FACT_EVENTS: tuple[type[Event], ...] = (
    DataQuarantined,
    DataGap,
    FeedStale,
    FeedResumed,
    PriceLevelReset,
    VolatilityRegimeChanged,
    StrategyDeployed,
    StrategyPaused,
    StrategyResumed,
    StrategyStopped,
    OrderSubmitRetried,
    OrderSubmitAmbiguous,
    OrderStatusQueried,
    OrderTimedOut,
    OrderCancelRetried,
    LateVenueReport,
    StrategyDisabled,
    StrategyFailed,
    EngineStarted,
    EngineStopped,
    StoreFaulted,
    StoreRecovered,
    EngineStateRecorded,
    CommandCompleted,
    ReconciliationStarted,
    ReconciliationDifference,
    ReconciliationPassed,
    TradingModeChanged,
    LimitBreached,
)
for _cls in FACT_EVENTS:
    register(_cls, folded=False)
