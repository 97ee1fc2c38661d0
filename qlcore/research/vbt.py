"""vectorbt with the engine's conventions: signals one bar late, filled at that bar's open, fees in bps.

`Conventions` names how a signal becomes a fill on the vectorbt side; the default is the
event-driven engine's rule (`qlcore/brokers/simulated.py`): a market order sent while bar t is
processed fills at the open of bar t+1, and a signal on the last bar never fills.

`simulate_orders` is the one place that simulates: it calls vectorbt's signal simulator,
`simulate_from_signals_nb`, with the arguments `Portfolio.from_signals` would pass for a long-only
run, and returns the order records. Calling it directly skips what `from_signals` adds around it
for a sweep: the close broadcast to (bars x sets), a call-sequence matrix and pandas copies of
both (half the time and most of the memory). `portfolio` wraps the records in a vectorbt
`Portfolio`, so parity values positions with vectorbt's own code.

Every call passes arrays of the same types (dtype, layout, writability), so numba compiles the
simulator once; vectorbt leaves it out of numba's disk cache, and `vectorbt()` turns the cache on,
so a second process loads it instead of compiling again (see docs/research.md).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any, Literal

import numpy as np
import pandas as pd

# vectorbt kernels that vectorbt compiles without `cache=True` and that our paths call
_UNCACHED_KERNELS = ("simulate_from_signals_nb",)


@cache
def vectorbt() -> ModuleType:
    """The `vectorbt` module, imported on first use, with numba's disk cache on for our kernels."""
    import vectorbt as vbt
    from vectorbt.portfolio import nb as portfolio_nb

    for name in _UNCACHED_KERNELS:
        dispatcher = getattr(portfolio_nb, name)
        if type(dispatcher._cache).__name__ == "NullCache":
            dispatcher.enable_caching()
    return vbt


@dataclass(frozen=True, slots=True)
class Conventions:
    """How a signal on bar t becomes a fill on the vectorbt side.

    ``signal_delay`` bars later, at that bar's ``price`` (``"open"`` or ``"close"``). The default,
    one bar later at the open, is the event-driven engine's rule; anything else is a what-if (and
    ``signal_delay=0, price="open"`` looks ahead: it trades at a price before the signal existed).
    """

    signal_delay: int = 1
    price: Literal["open", "close"] = "open"

    def __post_init__(self) -> None:
        delay = self.signal_delay
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise ValueError(f"signal_delay must be an integer >= 0, got {delay!r}")
        if self.price not in ("open", "close"):
            raise ValueError(f"price must be 'open' or 'close', got {self.price!r}")

    @property
    def is_engine(self) -> bool:
        return self == ENGINE

    def describe(self) -> str:
        when = "the signal bar" if self.signal_delay == 0 else f"{self.signal_delay} bar(s) after the signal"
        return f"fill at the {self.price} of {when}"


ENGINE = Conventions()


def delayed(signal: np.ndarray, delay: int) -> np.ndarray:
    """`signal` moved `delay` bars later along axis 0; what falls off the end never fills."""
    if delay == 0:
        return signal
    out = np.zeros_like(signal)
    if delay < len(signal):
        out[delay:] = signal[:-delay]
    return out


@dataclass(frozen=True, slots=True)
class Sizing:
    """Order size on entry: a fixed quantity (shares) per column, or a fraction of equity."""

    quantity: np.ndarray | None = None  # one value per column
    fraction: float | None = None

    def __post_init__(self) -> None:
        if (self.quantity is None) == (self.fraction is None):
            raise ValueError("give either quantity or fraction")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.quantity is not None and not (np.asarray(self.quantity) > 0).all():
            raise ValueError("quantity must be > 0")

    def columns(self, start: int, stop: int) -> Sizing:
        if self.quantity is None:
            return self
        return Sizing(quantity=np.asarray(self.quantity)[start:stop])


def simulate_orders(
    close: np.ndarray,
    price: np.ndarray,
    entries: np.ndarray,
    exits: np.ndarray,
    *,
    sizing: Sizing,
    fee_bps: float,
    init_cash: float,
) -> np.ndarray:
    """vectorbt's order records (id, col, idx, size, price, fees, side) for long-only signals.

    `entries` and `exits` are (bars, columns) and already delayed; `price` is each bar's fill
    price and `close` values the position at the bar's end (one column each). Each column is its
    own account with `init_cash`. Fees are ``fee_bps / 10,000`` of notional. Entries apply when
    flat, exits when long. A fraction of equity buys whole shares (the engine's lot of one).
    """
    vectorbt()
    from vectorbt.portfolio.enums import AccumulationMode, Direction, SizeType
    from vectorbt.portfolio.nb import simulate_from_signals_nb

    n, k = entries.shape
    if sizing.fraction is not None:
        size, size_type, granularity = np.full(k, sizing.fraction), SizeType.Percent, 1.0
    else:
        size, size_type, granularity = np.array(sizing.quantity, dtype=np.float64), SizeType.Amount, np.nan
    entries, exits, size, width = _fortran_columns(entries, exits, size)
    orders_bound = int(np.count_nonzero(entries)) + int(np.count_nonzero(exits))
    call = inspect.signature(simulate_from_signals_nb.py_func).bind(
        (n, width),
        np.ones(width, dtype=np.int64),  # one column per group: no cash sharing
        np.full(width, float(init_cash)),
        # the call sequence orders columns within a group: never read with one column per group
        np.lib.stride_tricks.as_strided(np.zeros(1, dtype=np.int64), (n, width), (0, 0)),
        entries=entries,
        exits=exits,
        direction=np.asarray(Direction.LongOnly),
        size=size.reshape(1, width),
        price=np.array(price, dtype=np.float64).reshape(n, 1),
        size_type=np.asarray(size_type),
        fees=np.asarray(float(fee_bps) / 10_000),
        size_granularity=np.asarray(granularity),
        accumulate=np.asarray(AccumulationMode.Disabled),
        close=np.array(close, dtype=np.float64).reshape(n, 1),
        use_stops=False,
        ffill_val_price=True,
        update_value=False,
        max_orders=max(orders_bound, 1),  # at most one order per signal
        flex_2d=True,
    )
    # every argument explicit, defaults included: numba types an omitted argument by its default
    # value, and an array default does not match itself when the disk cache's index is read back
    call.apply_defaults()
    records, _ = simulate_from_signals_nb(*call.args, **call.kwargs)
    return records[records["col"] < k]


def _fortran_columns(
    entries: np.ndarray, exits: np.ndarray, size: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Writable column-major signal matrices of at least two columns (same numba types every call).

    A one-column matrix is C-contiguous, which numba types apart from the column-major case: a
    second compile of vectorbt's simulator. One spare column with no signals keeps one type.
    """
    n, k = entries.shape
    if k == 1:
        pad = np.zeros((n, 1), dtype=bool)
        entries, exits = np.hstack([entries, pad]), np.hstack([exits, pad])
        size = np.append(size, size[:1])
    return (
        np.asfortranarray(entries, dtype=bool),
        np.asfortranarray(exits, dtype=bool),
        size,
        entries.shape[1],
    )


def portfolio(records: np.ndarray, close: pd.Series, init_cash: float) -> Any:
    """A vectorbt `Portfolio` of one column from `simulate_orders` records, valued at `close`."""
    vbt = vectorbt()
    wrapper = vbt.ArrayWrapper(close.index, [str(close.name or "close")], ndim=2)
    log_dt = vbt.portfolio.enums.log_dt
    return vbt.Portfolio(
        wrapper,
        close.to_frame(),
        records,
        np.empty(0, dtype=log_dt),
        np.array([float(init_cash)]),
        cash_sharing=False,
    )
