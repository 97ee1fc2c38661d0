"""The parsed table between raw input and the canonical frame.

A ``Table`` keeps one row per input row, labelled by where it came from (file line number, or
0-based position for in-memory frames), with unparseable cells turned into NaT/NaN. Every rule
reports a ``Finding``: the labels of the rows it flags, vectorized, and how to word one of them.
Only the first few findings in input order are ever turned into messages, so a file that is
wrong on every one of a million rows fails as fast as a file that is wrong on one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from qlcore.data.errors import DataIssue

COLUMNS = ("open", "high", "low", "close", "volume")
PRICES = COLUMNS[:4]
_NAN_WORDS = frozenset({"nan", "-nan", "+nan", "na", "n/a", "null", "none", "#n/a"})
_OFFSET = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?:Z|[+-]\d{2}:?\d{2})$")
_NS_MIN, _NS_MAX = pd.Timestamp.min, pd.Timestamp.max
_SHOWN_CHARS = 40  # of a cell quoted in a message


@dataclass(slots=True)
class Table:
    """Parsed bars: column ``ts`` (datetime64[ns], NaT if bad) and the five value columns
    (float64, NaN if bad), indexed by row label.

    ``text`` holds the input's strings for messages, or ``read_text`` reads them on first use;
    ``edited`` are the labels whose values a repair changed (messages show the new values).
    """

    bars: pd.DataFrame
    source: str
    in_file: bool
    text: pd.DataFrame | None = None
    read_text: Callable[[], pd.DataFrame] | None = None
    edited: frozenset[int] = field(default_factory=frozenset)

    @property
    def unit(self) -> str:
        return "line" if self.in_file else "row"

    def clean_mask(self) -> np.ndarray:
        """Rows whose timestamp and five values all parsed to finite numbers."""
        return clean_rows(self.bars)

    def show(self, label: int, column: str) -> str:
        """A cell as the input wrote it (the first characters of a long one), or as a repair left it."""
        if self.text is None and self.read_text is not None:
            self.text, self.read_text = self.read_text(), None
        if self.text is not None and (column == "ts" or label not in self.edited):
            raw = self.text.at[label, column]
            if isinstance(raw, str):
                raw = raw.strip()
                return raw if len(raw) <= _SHOWN_CHARS else f"{raw[:_SHOWN_CHARS]}... ({len(raw):,} characters)"
        value = self.bars.at[label, column]
        return str(value) if column == "ts" else repr(float(cast(float, value)))

    def issue(self, label: int | None, column: str | None, reason: str, kind: str) -> DataIssue:
        row = None if label is None else int(label)
        return DataIssue(self.source, row, column, reason, kind, self.in_file)


@dataclass(frozen=True, slots=True)
class Finding:
    """The rows one rule flags (labels, in table order) and how to word one: label -> reason, kind."""

    labels: np.ndarray
    column: str | None
    explain: Callable[[int], tuple[str, str]]


def clean_rows(bars: pd.DataFrame) -> np.ndarray:
    """Mask of parsed rows with a timestamp and five finite values."""
    values = bars[list(COLUMNS)].to_numpy(dtype="float64")
    return bars["ts"].notna().to_numpy() & np.isfinite(values).all(axis=1)


def parse_timestamps(text: pd.Series) -> pd.Series:
    """ISO 8601 strings to tz-naive datetime64[ns]; unparseable or out-of-range -> NaT.

    A UTC offset, if written, is dropped and the wall-clock time kept: bar times are the
    exchange-local time as written in the file.
    """
    try:
        ts = pd.to_datetime(text, format="ISO8601", errors="coerce")
    except ValueError:  # offsets mixed with naive times, or several offsets
        stripped = text.astype(str).str.replace(_OFFSET, r"\1", regex=True)
        ts = pd.to_datetime(stripped, format="ISO8601", errors="coerce")
    if ts.dt.tz is not None:
        ts = ts.dt.tz_localize(None)
    ts = ts.where((ts >= _NS_MIN) & (ts <= _NS_MAX))
    return ts.dt.as_unit("ns")


def table_from_text(text: pd.DataFrame, source: str) -> tuple[Table, list[Finding]]:
    """Parse string columns ``ts`` + COLUMNS (index = file line numbers), flagging bad cells."""
    bars = pd.DataFrame(index=text.index)
    bars["ts"] = parse_timestamps(text["ts"])
    for col in COLUMNS:
        bars[col] = pd.to_numeric(text[col], errors="coerce").to_numpy("float64", na_value=np.nan)
    table = Table(bars, source, in_file=True, text=text)
    labels = text.index.to_numpy()

    def explain_ts(label: int) -> tuple[str, str]:
        raw = table.show(label, "ts")
        if raw:
            return f"unparseable timestamp {raw!r}", "bad_timestamp"
        return "empty timestamp", "empty_value"

    findings = [Finding(labels[bars["ts"].isna().to_numpy()], "ts", explain_ts)]
    for col in COLUMNS:
        bad = ~np.isfinite(bars[col].to_numpy())

        def explain(label: int, col: str = col) -> tuple[str, str]:
            return _explain_bad_number(table.show(label, col), float(cast(float, table.bars.at[label, col])))

        findings.append(Finding(labels[bad], col, explain))
    return table, findings


def _explain_bad_number(raw: str, value: float) -> tuple[str, str]:
    if raw == "":
        return "empty value", "empty_value"
    if np.isnan(value) and raw.lower() in _NAN_WORDS:
        return f"NaN value {raw!r}", "nan_value"
    if np.isinf(value):
        return f"value {raw!r} is not finite", "non_numeric"
    return f"non-numeric value {raw!r}", "non_numeric"


def table_from_frame(
    df: pd.DataFrame, source: str
) -> tuple[Table | None, list[DataIssue], list[Finding]]:
    """Check the shape of an in-memory frame and parse it; rows are labelled by position.

    Returns the table (None if its shape is unusable), whole-table issues, and cell findings.
    """
    issues: list[DataIssue] = []

    def header(column: str | None, reason: str, kind: str) -> None:
        issues.append(DataIssue(source, None, column, reason, kind, in_file=False))

    names = [str(c) for c in df.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    for name in duplicated:
        header(name, f"duplicate column {name!r}", "duplicate_column")
    for name in names:
        if name not in COLUMNS:
            expected = ", ".join(COLUMNS)
            header(name, f"unknown column {name!r}; expected {expected}", "unknown_column")
    missing = [c for c in COLUMNS if c not in names]
    for name in missing:
        header(name, f"missing column {name!r}", "missing_column")
    index = df.index
    if not isinstance(index, pd.DatetimeIndex):
        kind_name = type(index).__name__
        header("ts", f"index is a {kind_name}, not a DatetimeIndex of bar times", "bad_timestamp")
    if duplicated or missing or not isinstance(index, pd.DatetimeIndex):
        return None, issues, []
    if index.tz is not None:
        header("ts", f"index is tz-aware ({index.tz}); bar times must be tz-naive", "tz_aware")
        index = index.tz_localize(None)

    labels = np.arange(len(df))
    bars = pd.DataFrame({"ts": index.as_unit("ns")}, index=labels)
    table = Table(bars, source, in_file=False)
    findings = [
        Finding(
            labels[bars["ts"].isna().to_numpy()],
            "ts",
            lambda _: ("missing timestamp (NaT)", "bad_timestamp"),
        )
    ]
    for col in COLUMNS:
        series = df[col]
        if is_numeric_dtype(series.dtype) and not is_bool_dtype(series.dtype):
            bars[col] = series.to_numpy("float64", na_value=np.nan)
        else:
            bars[col] = pd.to_numeric(series, errors="coerce").to_numpy("float64", na_value=np.nan)

        def explain(label: int, series: pd.Series = series) -> tuple[str, str]:
            original, value = series.iloc[label], float(cast(float, table.bars.at[label, series.name]))
            if np.isnan(value) and not pd.isna(original):
                return f"non-numeric value {original!r}", "non_numeric"
            if np.isnan(value):
                return "NaN value", "nan_value"
            return f"value {value!r} is not finite", "non_numeric"

        findings.append(Finding(labels[~np.isfinite(bars[col].to_numpy())], col, explain))
    return table, issues, findings
