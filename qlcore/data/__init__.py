"""Market data: load, validate and describe OHLCV bars in one canonical frame.

The canonical bar frame: a DataFrame indexed by a strictly increasing, unique ``DatetimeIndex``
named ``"ts"`` (datetime64[ns]) — tz-aware in the exchange's zone when the zone is known (a file with
UTC offsets or epoch times, a ``tz`` / ``exchange_tz`` option, a tz-aware frame or Parquet file),
else tz-naive exchange-local time as written — columns exactly ``open, high, low, close, volume`` as
float64, and ``attrs`` holding ``symbol``, ``source``, ``sha256`` and ``frequency`` (``"1D"``,
``"5min"``, ``"tick"``, ...), plus ``adjusted: True`` when prices were scaled by Adj Close.
A tz-aware index's ``asi8`` is UTC nanoseconds, the engine's clock.
"""

from qlcore.data.catalog import inspect_file, list_datasets, load
from qlcore.data.conditions import RegimeConfig, VolatilityMonitor, VolatilityRegimeChanged
from qlcore.data.csv import load_csv
from qlcore.data.errors import DataIssue, DataOptionError, DataValidationError, UnknownSymbolError
from qlcore.data.feed import (
    Fault,
    FaultKind,
    Feed,
    ManualClock,
    ReplayFeed,
    SymbolSeed,
    SyntheticIntradayFeed,
)
from qlcore.data.options import CsvOptions
from qlcore.data.parquet import load_parquet, save_parquet
from qlcore.data.quality import (
    DataGap,
    DataQuarantined,
    FeedResumed,
    FeedStale,
    IngestionGate,
    PriceLevelReset,
    QualityConfig,
)
from qlcore.data.repair import REPAIRS
from qlcore.data.report import DataQualityReport
from qlcore.data.resample import resample_bars
from qlcore.data.sample import SAMPLE_SYMBOLS, load_sample
from qlcore.data.sessions import CalendarCheck, SessionGap, check_sessions
from qlcore.data.synthetic import synthetic_bars
from qlcore.data.table import COLUMNS
from qlcore.data.validate import check_bars, infer_frequency, validate_bars

__all__ = [
    "COLUMNS",
    "REPAIRS",
    "SAMPLE_SYMBOLS",
    "CalendarCheck",
    "CsvOptions",
    "DataGap",
    "DataIssue",
    "DataOptionError",
    "DataQualityReport",
    "DataQuarantined",
    "DataValidationError",
    "Fault",
    "FaultKind",
    "Feed",
    "FeedResumed",
    "FeedStale",
    "IngestionGate",
    "ManualClock",
    "PriceLevelReset",
    "QualityConfig",
    "RegimeConfig",
    "ReplayFeed",
    "SessionGap",
    "SymbolSeed",
    "SyntheticIntradayFeed",
    "UnknownSymbolError",
    "VolatilityMonitor",
    "VolatilityRegimeChanged",
    "check_bars",
    "check_sessions",
    "infer_frequency",
    "inspect_file",
    "list_datasets",
    "load",
    "load_csv",
    "load_parquet",
    "load_sample",
    "resample_bars",
    "save_parquet",
    "synthetic_bars",
    "validate_bars",
]
