"""Bars to a higher timeframe: first open, highest high, lowest low, last close, summed volume.

Bins follow the exchange's clock (the index's own zone when it is tz-aware, the wall-clock times
as written when naive), so a week is Monday..Sunday in New York whatever the season:

- daily and coarser rules (``1D``, ``1W``, ``W-FRI``, ``ME``, ``QE``, ``YE``, ...) group bars by
  the calendar period of their exchange-local time; ``1D`` is one bin per date, i.e. per session
  of a day-session exchange;
- intraday rules (``5min``, ``1h``, ...) are anchored at each day's first bar (the session open
  as traded), never at midnight, and never span two days: an hour bar of an exchange opening at
  09:30 covers 09:30..10:29, not 09:00..09:59.

Each bar is labelled by the timestamp of the last bar in it (``label="last"``, the default): a
weekly bar is then labelled with the week's last session, the moment it is complete, so a
strategy reading it cannot see the future. ``label="first"`` labels by the first bar instead.
Empty periods (a week of holidays) give no bar.
"""

from __future__ import annotations

from typing import Literal, cast

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BaseOffset

from qlcore.data.table import COLUMNS
from qlcore.data.validate import infer_frequency

_NS_PER_DAY = 86_400 * 10**9


def resample_bars(df: pd.DataFrame, rule: str, label: Literal["last", "first"] = "last") -> pd.DataFrame:
    """``df``'s bars aggregated to ``rule`` (a pandas frequency such as ``"1W"`` or ``"1h"``).

    The result is a canonical bar frame in the same zone, with ``attrs`` copied and
    ``frequency`` set to the new spacing.
    """
    if label not in ("last", "first"):
        raise ValueError(f"label must be 'last' or 'first', got {label!r}")
    if not isinstance(df.index, pd.DatetimeIndex):
        raise TypeError(f"resample_bars needs a DatetimeIndex of bar times, got {type(df.index).__name__}")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"bar frame lacks columns {missing}")
    if not (df.index.is_monotonic_increasing and df.index.is_unique):
        raise ValueError("bar times must be strictly increasing (load the frame through qlcore.data)")
    try:
        offset = to_offset(rule)
    except ValueError:
        raise ValueError(f"rule {rule!r} is not a pandas frequency such as '1W', 'ME', '1h' or '5min'") from None
    wall = df.index.tz_localize(None) if df.index.tz is not None else df.index
    keys = _intraday_keys(wall, offset, rule) if _is_intraday(offset) else _calendar_keys(wall, rule)
    groups = pd.DataFrame({c: df[c].to_numpy(dtype="float64") for c in COLUMNS}).groupby(keys, sort=False)
    out = pd.DataFrame({
        "open": groups["open"].first(),
        "high": groups["high"].max(),
        "low": groups["low"].min(),
        "close": groups["close"].last(),
        "volume": groups["volume"].sum(),
    })
    positions = pd.Series(np.arange(len(df))).groupby(keys, sort=False)
    at = (positions.max() if label == "last" else positions.min()).to_numpy()
    out.index = pd.DatetimeIndex(df.index[at], name="ts")
    out.attrs.update(df.attrs)
    out.attrs["frequency"] = infer_frequency(out.index)
    return out


def _is_intraday(offset: BaseOffset) -> bool:
    return isinstance(offset, pd.offsets.Tick) and pd.Timedelta(offset) < pd.Timedelta(days=1)


def _intraday_keys(wall: pd.DatetimeIndex, offset: BaseOffset, rule: str) -> np.ndarray:
    step = pd.Timedelta(cast(pd.offsets.Tick, offset)).value
    if step <= 0:
        raise ValueError(f"rule {rule!r} must be a positive span")
    ns = wall.as_unit("ns").asi8
    day = ns // _NS_PER_DAY
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    anchor = np.repeat(ns[starts], np.diff(np.r_[starts, len(ns)]))  # each day's first bar
    return day * (_NS_PER_DAY // step + 1) + (ns - anchor) // step


def _calendar_keys(wall: pd.DatetimeIndex, rule: str) -> np.ndarray:
    days = pd.Series(np.arange(len(wall)), index=wall.normalize())
    try:
        bins = days.groupby(pd.Grouper(freq=rule)).ngroup()  # one number per period
    except (ValueError, TypeError) as exc:
        raise ValueError(f"rule {rule!r} cannot group bars: {exc}") from None
    return bins.to_numpy()
