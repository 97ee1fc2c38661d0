"""Market data: load, validate and describe OHLCV bars in one canonical frame.

The canonical bar frame: a DataFrame indexed by a tz-naive, strictly increasing, unique
``DatetimeIndex`` named ``"ts"`` (datetime64[ns], exchange-local time as written), columns exactly
``open, high, low, close, volume`` as float64, and ``attrs`` holding ``symbol``, ``source``,
``sha256`` and ``frequency`` (``"1D"``, ``"5min"``, ``"tick"``, ...).
"""

from qlcore.data.catalog import inspect_file, list_datasets, load
from qlcore.data.conditions import RegimeConfig, VolatilityMonitor, VolatilityRegimeChanged
from qlcore.data.csv import load_csv
from qlcore.data.errors import DataIssue, DataValidationError, UnknownSymbolError
from qlcore.data.feed import (
    Fault,
    FaultKind,
    Feed,
    ManualClock,
    ReplayFeed,
    SymbolSeed,
    SyntheticIntradayFeed,
)
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
from qlcore.data.sample import SAMPLE_SYMBOLS, load_sample
from qlcore.data.synthetic import synthetic_bars
from qlcore.data.table import COLUMNS
from qlcore.data.validate import check_bars, infer_frequency, validate_bars

__all__ = [
    "COLUMNS",
    "REPAIRS",
    "SAMPLE_SYMBOLS",
    "DataGap",
    "DataIssue",
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
    "SymbolSeed",
    "SyntheticIntradayFeed",
    "UnknownSymbolError",
    "VolatilityMonitor",
    "VolatilityRegimeChanged",
    "check_bars",
    "infer_frequency",
    "inspect_file",
    "list_datasets",
    "load",
    "load_csv",
    "load_parquet",
    "load_sample",
    "save_parquet",
    "synthetic_bars",
    "validate_bars",
]
