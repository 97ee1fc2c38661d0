"""Entry and exit matrices (bars x parameter sets) from a strategy's vectorized form.

Any strategy class with a ``vectorized_signals(close, **params)`` classmethod works, one set at a
time. The built-ins get batch paths that give the very same signals faster: `sma_cross` through a
numba kernel over all (fast, slow) pairs, `mean_reversion` with one z-score series per window
shared by every threshold pair. A subclass that overrides `vectorized_signals` gets the generic path.
"""
from __future__ import annotations

from collections.abc import Callable
from types import MethodType
from typing import cast

import numpy as np
import pandas as pd

from qlcore.research.vbt import delayed
from qlcore.strategies import Strategy
from qlcore.strategies.mean_reversion import MeanReversion
from qlcore.strategies.sma_cross import SmaCross, check_int64_bound, scaled_closes

Matrices = tuple[np.ndarray, np.ndarray]


def signal_matrices(cls: type[Strategy], close: np.ndarray, sets: pd.DataFrame, delay: int) -> Matrices:
    """(entries, exits), each (len(close), len(sets)) bool in column order, moved `delay` bars later."""
    shape = (len(close), len(sets))
    entries = np.zeros(shape, dtype=bool, order="F")
    exits = np.zeros(shape, dtype=bool, order="F")
    build = _batch_path(cls)
    build(cls, np.asarray(close, dtype=np.float64), sets, delay, entries, exits)
    return entries, exits


def _batch_path(cls: type[Strategy]) -> Callable[..., None]:
    for base, build in ((SmaCross, _sma_cross), (MeanReversion, _mean_reversion)):
        if issubclass(cls, base) and _same_method(cls, base):
            return build
    return _one_set_at_a_time


def _same_method(cls: type[Strategy], base: type[Strategy]) -> bool:
    # on a base that defines it, the classmethod read from the class is a bound method
    return getattr(cls.vectorized_signals, "__func__", None) is cast(MethodType, base.vectorized_signals).__func__


def _one_set_at_a_time(cls, close, sets, delay, entries, exits) -> None:
    for j, params in enumerate(sets.to_dict("records")):
        e, x = cls.vectorized_signals(close, **params)
        entries[:, j] = delayed(np.asarray(e, dtype=bool), delay)
        exits[:, j] = delayed(np.asarray(x, dtype=bool), delay)


def _sma_cross(cls, close, sets, delay, entries, exits) -> None:
    from qlcore.research.kernels import sma_cross_signals_nb

    x = scaled_closes(close)
    fasts = sets["fast"].to_numpy(dtype=np.int64)
    slows = sets["slow"].to_numpy(dtype=np.int64)
    widest = int(np.argmax(fasts * slows))
    check_int64_bound(x, int(fasts[widest]), int(slows[widest]))
    sma_cross_signals_nb(x, fasts, slows, delay, entries, exits)


def _mean_reversion(cls, close, sets, delay, entries, exits) -> None:
    windows = sets["window"].to_numpy(dtype=np.int64)
    entry_z = sets["entry_z"].to_numpy(dtype=np.float64)
    exit_z = sets["exit_z"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        for window in np.unique(windows):
            z = cls.vectorized_zscore(close, int(window))
            for j in np.flatnonzero(windows == window):
                entries[:, j] = delayed(z < -entry_z[j], delay)
                exits[:, j] = delayed(z > -exit_z[j], delay)
