"""Bar frames in Parquet: the canonical frame stored as is, validated by the same rules on load.

A Parquet file must hold the canonical columns with the bar times as index (or as a ``ts``
column). A tz-aware index stays tz-aware (converted to ``exchange_tz`` when given); a naive one
is taken as the wall-clock time in ``exchange_tz`` when given. Rows in issues are 0-based
positions, since a Parquet file has no lines.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pandas as pd

from qlcore.data.csv import symbol_from_path
from qlcore.data.errors import DataIssue
from qlcore.data.options import CsvOptions
from qlcore.data.pipeline import finish, read_source, require, unreadable
from qlcore.data.repair import RepairSpec, resolve_repairs
from qlcore.data.report import DataQualityReport
from qlcore.data.table import COLUMNS, table_from_frame
from qlcore.data.validate import validate_bars


def load_parquet(
    path: str | os.PathLike[str],
    symbol: str | None = None,
    repair: RepairSpec = False,
    exchange_tz: str | None = None,
) -> pd.DataFrame:
    """Load a Parquet bar file as the canonical frame; DataValidationError names the first bad row."""
    return require(*read_parquet_bars(path, symbol, repair, exchange_tz))


def read_parquet_bars(
    path: str | os.PathLike[str],
    symbol: str | None = None,
    repair: RepairSpec = False,
    exchange_tz: str | None = None,
) -> tuple[pd.DataFrame | None, DataQualityReport]:
    """The frame (None if invalid) and the quality report for a Parquet bar file."""
    repairs = resolve_repairs(repair)
    if exchange_tz is not None:
        CsvOptions(exchange_tz=exchange_tz)  # names a zone that does not exist
    file = Path(path).expanduser().resolve()
    data, problem = read_source(file)
    if data is None:
        assert problem is not None
        return unreadable(problem, symbol or symbol_from_path(file))
    try:
        df = pd.read_parquet(io.BytesIO(data))
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        reason = f"not a readable Parquet file: {str(exc).splitlines()[0][:200]}"
        return unreadable(DataIssue(str(file), None, None, reason, "not_parquet", in_file=False),
                          symbol or symbol_from_path(file))
    if "ts" in df.columns and not isinstance(df.index, pd.DatetimeIndex):
        df = df.set_index("ts")
    stored = df.attrs.get("symbol")
    table, issues, findings = table_from_frame(df, str(file), exchange_tz)
    return finish(
        table,
        issues,
        findings,
        source=str(file),
        symbol=symbol or (stored if isinstance(stored, str) and stored else symbol_from_path(file)),
        repairs=repairs,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def save_parquet(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Validate a bar frame and write it to Parquet (index ``ts``, float64 columns, attrs kept)."""
    file = Path(path).expanduser()
    validate_bars(df, str(file))
    out = df[list(COLUMNS)].astype("float64")
    out.index = pd.DatetimeIndex(df.index, name="ts").as_unit("ns")
    out.attrs = {k: v for k, v in df.attrs.items() if isinstance(v, str | int | float | bool)}
    out.to_parquet(file)
