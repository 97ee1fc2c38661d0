"""Deterministic synthetic bars for tests and benchmarks.

A geometric random walk with mild volatility (20% a year, scaled to the bar length with a
6.5-hour trading day, so a 1-minute bar moves about 0.064% and a daily bar about 1.26%).
Each bar opens at the previous close; wicks stretch the body up and down by half-normal
amounts. Prices are whole numbers of ``tick`` and never below one tick, so every frame is a valid
bar frame. Volume is integer-valued (lognormal around 1,000 a minute).

Timestamps are ``pandas.date_range(start, periods=n, freq=freq)``: perfectly regular, with no
weekends, holidays or sessions modelled. The same arguments give the same frame bit for bit
(numpy's PCG64 generator). ``sha256`` is the digest of the raw index and value bytes: rendering
a million rows as CSV only to hash them would cost more than generating them.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from qlcore.data.table import COLUMNS
from qlcore.data.validate import infer_frequency

_ANNUAL_VOL = 0.20
_SESSION_SECONDS = 6.5 * 3600
_DAYS_PER_YEAR = 252


def synthetic_bars(
    n: int,
    *,
    freq: str = "1min",
    start: str = "2020-01-02 09:30",
    seed: int = 0,
    start_price: float = 100.0,
    tick: float = 0.01,
    symbol: str = "SYN",
) -> pd.DataFrame:
    """``n`` valid, deterministic random-walk bars at a regular ``freq`` (see module docstring)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not (math.isfinite(start_price) and start_price > 0):
        raise ValueError(f"start_price must be a positive number, got {start_price!r}")
    if not (math.isfinite(tick) and tick > 0):
        raise ValueError(f"tick must be a positive number, got {tick!r}")
    index = pd.date_range(start, periods=int(n), freq=freq, name="ts").as_unit("ns")
    seconds = _bar_seconds(freq)
    sigma = _ANNUAL_VOL * math.sqrt(
        min(seconds, _SESSION_SECONDS) / (_DAYS_PER_YEAR * _SESSION_SECONDS)
    )
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, sigma, n)
    wick_up = np.abs(rng.normal(0.0, sigma / 2, n))
    wick_down = np.abs(rng.normal(0.0, sigma / 2, n))
    volume = np.floor(rng.lognormal(math.log(1000.0 * seconds / 60), 0.6, n))

    # Everything below is in whole ticks, so rounding cannot break low <= open, close <= high.
    close = np.maximum(np.rint(start_price * np.exp(np.cumsum(steps)) / tick), 1.0)
    open_ = np.concatenate(([max(round(start_price / tick), 1)], close[:-1]))
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    high = np.maximum(np.rint(top * np.exp(wick_up)), top)
    low = np.maximum(np.minimum(np.rint(bottom * np.exp(-wick_down)), bottom), 1.0)

    prices = [_to_price(ticks, tick) for ticks in (open_, high, low, close)]
    frame = pd.DataFrame(dict(zip(COLUMNS, [*prices, volume], strict=True)), index=index)
    digest = hashlib.sha256(index.asi8.tobytes())
    for col in COLUMNS:
        digest.update(frame[col].to_numpy().tobytes())
    frame.attrs.update(
        symbol=symbol,
        source=f"synthetic:seed={seed}",
        sha256=digest.hexdigest(),
        frequency=infer_frequency(index),
    )
    return frame


def _bar_seconds(freq: str) -> float:
    try:
        # the stubs accept only Tick; at run time any offset is accepted, non-fixed ones raise
        return pd.Timedelta(pd.tseries.frequencies.to_offset(freq)).total_seconds()  # type: ignore[arg-type]
    except ValueError:  # calendar offsets such as "B" or "MS" have no fixed length
        return 86_400.0


def _to_price(ticks: np.ndarray, tick: float) -> np.ndarray:
    per_unit = 1.0 / tick
    if abs(per_unit - round(per_unit)) < 1e-9 * per_unit:
        # k / 100 is the double nearest to the decimal k/100 (e.g. exactly float("100.01")),
        # which k * 0.01 is not
        return ticks / round(per_unit)
    return ticks * tick
