"""Real daily bars that ship with the project: the stocks of the ``bokeh-sampledata`` package.

AAPL, IBM and MSFT cover 2000-03-01 .. 2013-03-01 (3,270 days), GOOG 2004-08-19 .. 2013-03-01
(2,148 days). By default the bars are adjusted with the published ``adj_close`` (see
``load_sample``); the raw traded prices (``adjusted=False``) show the 2:1 splits as one-day
halvings of the close (AAPL 2000-06-21 and 2005-02-28, MSFT 2003-02-18).

Every row passes validation as published (checked for all four symbols: unique increasing
dates, positive prices, low <= open, close <= high), so no repair is applied. Should a future
version of the package ship a bad row, loading raises DataValidationError naming its 0-based
position rather than silently fixing it.

``sha256`` is the digest of the frame's canonical CSV rendering (there is no file to hash).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from qlcore.data.errors import UnknownSymbolError
from qlcore.data.pipeline import finish, require
from qlcore.data.table import COLUMNS, table_from_frame

SAMPLE_SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")


def load_sample(symbol: str, adjusted: bool = True) -> pd.DataFrame:
    """Daily bars for one of SAMPLE_SYMBOLS (case-insensitive), as a fresh copy.

    ``adjusted`` (the default) scales open, high, low and close by the published ``adj_close / close``
    of each day, so splits and dividends do not show as price drops (a 2:1 split would otherwise
    read as a 50% loss to a strategy holding through it); prices are rounded to 1e-6. Volume is
    left as traded. ``adjusted=False`` gives the raw traded prices.
    """
    key = symbol.upper() if isinstance(symbol, str) else symbol
    if key not in SAMPLE_SYMBOLS:
        raise UnknownSymbolError(symbol, SAMPLE_SYMBOLS)
    return _load(key, bool(adjusted)).copy(deep=True)


@lru_cache(maxsize=2 * len(SAMPLE_SYMBOLS))
def _load(symbol: str, adjusted: bool) -> pd.DataFrame:
    from bokeh.sampledata import stocks  # imported on first use: it reads all four files

    raw = getattr(stocks, symbol)
    index = pd.DatetimeIndex(pd.to_datetime(raw["date"], format="%Y-%m-%d"), name="ts")
    data = {col: np.asarray(raw[col], dtype="float64") for col in COLUMNS}
    if adjusted:
        factor = np.asarray(raw["adj_close"], dtype="float64") / data["close"]
        for col in ("open", "high", "low", "close"):
            # rounding is monotone, so a valid bar stays valid (low <= open, close <= high)
            data[col] = np.round(data[col] * factor, 6)
    df = pd.DataFrame(data, index=index.as_unit("ns"))
    source = f"sample:{symbol}" + ("" if adjusted else ":raw")
    table, issues, findings = table_from_frame(df, source)
    return require(*finish(table, issues, findings, source=source, symbol=symbol))
