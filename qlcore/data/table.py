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
from typing import Any, cast

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from pandas.tseries.api import guess_datetime_format

from qlcore.data.errors import DataIssue
from qlcore.data.options import CsvOptions

COLUMNS = ("open", "high", "low", "close", "volume")
PRICES = COLUMNS[:4]
_NAN_WORDS = frozenset({"nan", "-nan", "+nan", "na", "n/a", "null", "none", "#n/a"})
_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})$")  # a time, then its offset
_NS_MIN, _NS_MAX = pd.Timestamp.min, pd.Timestamp.max
_SHOWN_CHARS = 40  # of a cell quoted in a message
DEFAULT_OPTIONS = CsvOptions()
_HINT = ("expected ISO 8601 such as 2006-01-02 09:30:00; for other layouts give date_format (--date-format), "
         "dayfirst (--dayfirst) or timestamp_unit (--timestamp-unit)")
_EPOCH_LIKE = re.compile(r"[-+]?\d{9,19}(?:\.\d+)?")


@dataclass(slots=True)
class Table:
    """Parsed bars: column ``ts`` (datetime64[ns], NaT if bad; UTC when ``zone`` is set, the
    wall-clock time as written otherwise) and the five value columns (float64, NaN if bad),
    indexed by row label.

    ``text`` holds the input's strings for messages, or ``read_text`` reads them on first use;
    ``edited`` are the labels whose values a repair changed (messages show the new values).
    """

    bars: pd.DataFrame
    source: str
    in_file: bool
    text: pd.DataFrame | None = None
    read_text: Callable[[], pd.DataFrame] | None = None
    edited: frozenset[int] = field(default_factory=frozenset)
    zone: str | None = None
    notes: tuple[str, ...] = ()  # what the load did that the report must say (adjusted prices, zones)
    adjusted: bool = False

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
        if column == "ts":
            return str(self.local(pd.Timestamp(cast(pd.Timestamp, value))))
        return repr(float(cast(float, value)))

    def local(self, ts: pd.Timestamp) -> pd.Timestamp:
        """A ``ts`` value as the frame's index will hold it (in ``zone`` when there is one)."""
        return ts.tz_localize("UTC").tz_convert(self.zone) if self.zone is not None and ts is not pd.NaT else ts

    def index(self, ts: pd.Series | np.ndarray) -> pd.DatetimeIndex:
        """``ts`` values as the frame's index: tz-aware in ``zone``, or naive wall-clock times."""
        index = pd.DatetimeIndex(np.asarray(ts).astype("datetime64[ns]"), name="ts")
        return index.tz_localize("UTC").tz_convert(self.zone) if self.zone is not None else index

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


@dataclass(frozen=True, slots=True)
class Stamps:
    """Parsed timestamps: ``ts`` is datetime64[ns], UTC when ``zone`` is set (the frame's index is
    then tz-aware in ``zone``) and the wall-clock time as written when it is None. ``why`` holds,
    for rows whose timestamp could not be placed, the specific reason ("" for the generic one)."""

    ts: pd.Series
    zone: str | None
    why: pd.Series


def parse_timestamps(text: pd.Series, options: CsvOptions = DEFAULT_OPTIONS) -> Stamps:
    """Timestamps as the options say (ISO 8601 by default); unparseable or out-of-range -> NaT.

    A timestamp with a UTC offset keeps it (converted to UTC, never dropped); naive ones are in
    ``options.tz`` (or ``exchange_tz``) when given, else kept as wall-clock times, unless the file
    mixes them with offset-bearing ones, which is an issue on each naive row.
    """
    why = pd.Series("", index=text.index, dtype=object)
    if options.timestamp_unit is not None:
        return Stamps(_in_range(_epoch(text, options.timestamp_unit)), options.zone or "UTC", why)
    text = text.astype(str).str.strip()
    fmt = options.date_format or "ISO8601"
    if options.dayfirst:
        fmt, problem = _dayfirst_format(text)
        if problem:
            why[:] = problem
            return Stamps(pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]"), options.zone, why)
    if options.date_format is not None:
        has_offset = np.full(len(text), "%z" in fmt or "%Z" in fmt)
    else:
        has_offset = text.str.contains(_OFFSET).to_numpy(dtype=bool, na_value=False)
    ts = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    if has_offset.any():
        aware = pd.to_datetime(text[has_offset], format=fmt, utc=True, errors="coerce")
        ts[has_offset] = aware.dt.tz_localize(None).dt.as_unit("ns")
    naive = ~has_offset
    if naive.any():
        wall = pd.to_datetime(text[naive], format=fmt, errors="coerce").dt.as_unit("ns")
        zone = options.tz or options.exchange_tz
        if zone is not None:
            wall, reasons = localize(wall, zone)
            why[naive] = reasons
        elif has_offset.any():
            first = text.index[int(np.argmax(has_offset))]
            why[naive] = (f"has no UTC offset, while line {first} ({text[first]}) has one; give tz "
                          "(--tz) to say which zone the naive times are in")
            wall = pd.Series(pd.NaT, index=wall.index, dtype="datetime64[ns]")
        ts[naive] = wall
    zone = options.zone or ("UTC" if has_offset.any() else None)
    return Stamps(_in_range(ts), zone, why)


def localize(wall: pd.Series, zone: str) -> tuple[pd.Series, pd.Series]:
    """Wall-clock times in ``zone`` to UTC; times the zone skips or repeats (DST) -> NaT, with why."""
    local = wall.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    lost = local.isna() & wall.notna()
    why = pd.Series("", index=wall.index, dtype=object)
    if lost.any():
        shifted = wall[lost].dt.tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward")
        skipped = shifted.notna()  # shift_forward only helps times in a spring-forward gap
        why[lost[lost].index[skipped.to_numpy()]] = f"does not exist in {zone} (the clocks skip it for DST)"
        why[lost[lost].index[~skipped.to_numpy()]] = (f"occurs twice in {zone} (the clocks repeat it when DST "
                                                      "ends); write the file in UTC or with UTC offsets")
    return local.dt.tz_convert("UTC").dt.tz_localize(None).dt.as_unit("ns"), why


def _epoch(text: pd.Series, unit: Any) -> pd.Series:
    raw = text.astype(str).str.strip()
    whole = raw.str.fullmatch(r"[-+]?\d{1,19}").fillna(False).astype(bool)
    ts = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    # integers are read as integers: epoch nanoseconds do not fit a float
    for part in (whole, ~whole):
        if part.any():
            numbers = pd.to_numeric(raw[part], errors="coerce")
            ts[part] = pd.to_datetime(numbers, unit=unit, errors="coerce").dt.as_unit("ns")
    return ts


def _dayfirst_format(text: pd.Series) -> tuple[str, str]:
    first = next((t for t in text if t), "")
    fmt = guess_datetime_format(first, dayfirst=True) if first else None
    if fmt is None:
        return "", f"cannot read {first!r} as a day-first date; give date_format (--date-format)"
    if fmt.find("%d") > fmt.find("%m") or fmt.startswith("%Y"):
        return "", (f"dayfirst (--dayfirst) was given but {first!r} does not write the day first; "
                    "drop dayfirst, or give date_format (--date-format)")
    return fmt, ""


def _in_range(ts: pd.Series) -> pd.Series:
    return ts.where((ts >= _NS_MIN) & (ts <= _NS_MAX)).dt.as_unit("ns")


def table_from_text(
    text: pd.DataFrame, source: str, options: CsvOptions = DEFAULT_OPTIONS
) -> tuple[Table, list[Finding]]:
    """Parse string columns ``ts`` + value columns (index = file line numbers), flagging bad cells."""
    bars = pd.DataFrame(index=text.index)
    stamps = parse_timestamps(text["ts"], options)
    bars["ts"] = stamps.ts
    values = [col for col in text.columns if col != "ts"]
    for col in values:
        bars[col] = pd.to_numeric(text[col], errors="coerce").to_numpy("float64", na_value=np.nan)
    table = Table(bars, source, in_file=True, text=text, zone=stamps.zone)
    labels = text.index.to_numpy()
    findings = [Finding(labels[bars["ts"].isna().to_numpy()], "ts", _explain_ts(table, stamps.why, options))]
    for col in values:
        bad = ~np.isfinite(bars[col].to_numpy())

        def explain(label: int, col: str = col) -> tuple[str, str]:
            return _explain_bad_number(table.show(label, col), float(cast(float, table.bars.at[label, col])))

        findings.append(Finding(labels[bad], col, explain))
    return table, findings


def _explain_ts(table: Table, why: pd.Series, options: CsvOptions) -> Callable[[int], tuple[str, str]]:
    def explain(label: int) -> tuple[str, str]:
        raw = table.show(label, "ts")
        if not raw:
            return "empty timestamp", "empty_value"
        if why.get(label, ""):
            return f"timestamp {raw!r} {why[label]}", "bad_timestamp"
        if options.timestamp_unit is not None:
            return f"timestamp {raw!r} is not a number of {options.timestamp_unit} since the epoch", "bad_timestamp"
        if options.date_format is not None:
            return f"timestamp {raw!r} does not match date_format {options.date_format!r}", "bad_timestamp"
        if options.dayfirst:
            return f"unparseable day-first timestamp {raw!r}", "bad_timestamp"
        if _EPOCH_LIKE.fullmatch(raw):
            return (f"unparseable timestamp {raw!r}: it looks like an epoch number; give timestamp_unit "
                    "(--timestamp-unit s|ms|us|ns)"), "bad_timestamp"
        return f"unparseable timestamp {raw!r} ({_HINT})", "bad_timestamp"

    return explain


def _explain_bad_number(raw: str, value: float) -> tuple[str, str]:
    if raw == "":
        return "empty value", "empty_value"
    if np.isnan(value) and raw.lower() in _NAN_WORDS:
        return f"NaN value {raw!r}", "nan_value"
    if np.isinf(value):
        return f"value {raw!r} is not finite", "non_numeric"
    return f"non-numeric value {raw!r}", "non_numeric"


def table_from_frame(
    df: pd.DataFrame, source: str, exchange_tz: str | None = None
) -> tuple[Table | None, list[DataIssue], list[Finding]]:
    """Check the shape of an in-memory frame and parse it; rows are labelled by position.

    A tz-aware index stays aware (converted to ``exchange_tz`` when given); a naive one is taken
    as wall-clock time in ``exchange_tz`` when given, and kept naive otherwise.

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
    labels = np.arange(len(df))
    why = pd.Series("", index=labels, dtype=object)
    zone: str | None = exchange_tz
    if index.tz is not None:
        zone = exchange_tz or str(index.tz)
        ts = pd.Series(index.tz_convert("UTC").tz_localize(None).as_unit("ns"), index=labels)
    else:
        ts = pd.Series(index.as_unit("ns"), index=labels)
        if exchange_tz is not None:
            ts, why = localize(ts, exchange_tz)
    bars = pd.DataFrame({"ts": ts.to_numpy()}, index=labels)
    table = Table(bars, source, in_file=False, zone=zone)

    def explain_ts(label: int) -> tuple[str, str]:
        if why[label]:
            return f"timestamp {index[label]} {why[label]}", "bad_timestamp"
        return "missing timestamp (NaT)", "bad_timestamp"

    findings = [Finding(labels[bars["ts"].isna().to_numpy()], "ts", explain_ts)]
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
