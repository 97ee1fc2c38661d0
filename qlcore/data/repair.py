"""Opt-in, well-defined fixes for common defects in market data files.

Repairs run in this order and only touch rows whose cells all parsed:

- ``sort``: rows are stably sorted by timestamp (rows with equal times keep their file order);
  counted as the rows that were out of order.
- ``dedupe``: a row repeating an earlier row exactly (same time, same five values) is dropped.
  A repeated time with different values is *not* a duplicate and stays an error unless ``merge``.
- ``clip``: an open or close outside [low, high] widens the bar: ``low = min(low, open, close)``,
  ``high = max(high, open, close)``. Widening, not clipping, keeps the trades honest: the open and
  close are prints that happened, and moving them would change every return computed from them;
  a range too narrow to contain them was under-reported, so widening only admits prices that
  really traded. A bar with high below low is not repaired (no honest fix exists).
- ``merge``: rows sharing a timestamp (e.g. two trades printed in the same millisecond) become
  one bar: first open, highest high, lowest low, last close, summed volume, in file order.
  The merged row keeps the line number of its first row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import pandas as pd

from qlcore.data.table import COLUMNS, Table, clean_rows

REPAIRS = ("sort", "dedupe", "clip", "merge")

RepairSpec = bool | str | Iterable[str]


def resolve_repairs(repair: RepairSpec) -> tuple[str, ...]:
    """``True`` -> all repairs, ``False`` -> none, names -> those (ValueError if unknown)."""
    if repair is True:
        return REPAIRS
    if repair is False or repair is None:
        return ()
    names = {repair} if isinstance(repair, str) else set(repair)
    unknown = sorted(str(n) for n in names - set(REPAIRS))
    if unknown:
        raise ValueError(
            f"unknown repair {', '.join(map(repr, unknown))}; valid repairs: {', '.join(REPAIRS)}"
        )
    return tuple(r for r in REPAIRS if r in names)


def apply_repairs(table: Table, repairs: Iterable[str]) -> tuple[Table, dict[str, int]]:
    """A repaired copy of ``table`` and, per requested repair, how many rows it changed."""
    steps = {"sort": _sort, "dedupe": _dedupe, "clip": _clip, "merge": _merge}
    counts: dict[str, int] = {}
    bars, edited = table.bars, set(table.edited)
    for name in REPAIRS:
        if name in repairs:
            bars, counts[name] = steps[name](bars, edited)
    return replace(table, bars=bars, edited=frozenset(edited)), counts


def _sort(bars: pd.DataFrame, edited: set[int]) -> tuple[pd.DataFrame, int]:
    stamps = bars.loc[bars["ts"].notna(), "ts"].to_numpy().astype("datetime64[ns]").view("int64")
    if len(stamps) < 2:
        return bars, 0
    moved = int((stamps[1:] < np.maximum.accumulate(stamps)[:-1]).sum())
    if moved == 0:
        return bars, 0
    return bars.sort_values("ts", kind="stable", na_position="last"), moved


def _dedupe(bars: pd.DataFrame, edited: set[int]) -> tuple[pd.DataFrame, int]:
    repeats = bars[clean_rows(bars)].duplicated(subset=["ts", *COLUMNS], keep="first")
    drop = repeats.index[repeats.to_numpy()]
    return bars.drop(index=drop), len(drop)


def _clip(bars: pd.DataFrame, edited: set[int]) -> tuple[pd.DataFrame, int]:
    o, h, lo, c = (bars[col].to_numpy() for col in ("open", "high", "low", "close"))
    outside = clean_rows(bars) & (h >= lo) & ((np.minimum(o, c) < lo) | (np.maximum(o, c) > h))
    if not outside.any():
        return bars, 0
    bars = bars.copy()
    bars.loc[outside, "low"] = np.minimum(lo, np.minimum(o, c))[outside]
    bars.loc[outside, "high"] = np.maximum(h, np.maximum(o, c))[outside]
    edited.update(bars.index[outside].tolist())
    return bars, int(outside.sum())


def _merge(bars: pd.DataFrame, edited: set[int]) -> tuple[pd.DataFrame, int]:
    clean = clean_rows(bars)
    shared = np.zeros(len(bars), dtype=bool)
    shared[clean] = bars.loc[clean, "ts"].duplicated(keep=False).to_numpy()
    if not shared.any():
        return bars, 0
    group = bars[shared]
    merged = group.groupby("ts", sort=False).agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    heads = group[~group["ts"].duplicated(keep="first")]
    rows = merged.loc[heads["ts"].to_numpy()].set_axis(heads.index)
    bars = bars.copy()
    bars.loc[heads.index, list(COLUMNS)] = rows[list(COLUMNS)]
    edited.update(heads.index.tolist())
    drop = group.index.difference(heads.index, sort=False)
    return bars.drop(index=drop), len(drop)
