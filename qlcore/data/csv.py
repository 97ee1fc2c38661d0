"""Load bar CSV files, recognising the layouts by their header.

Recognised headers (case, spaces and underscores in names are ignored):

- Yahoo daily ``Date,Open,High,Low,Close,Adj Close,Volume`` (``Adj Close`` is ignored: bars use
  the traded close);
- intraday ``Date,Time,Open,High,Low,Close,Volume,OpenInterest`` (``OpenInterest`` is ignored);
- ticks ``Datetime,Open,High,Low,Close,Volume,OpenInterest`` with ISO timestamps;
- the canonical ``ts,open,high,low,close,volume`` written by ``DataFrame.to_csv``;
- a header naming ``Date`` but no ``Time`` while the rows carry one field more, the extra one
  right after the date and holding a time (the published ``futures-2006-01-02-1min.csv``):
  the missing ``Time`` name is inserted, the file is not rejected.

Timestamps are ISO 8601 (``2006-01-02``, ``2006-01-02 09:01:00``, ``2015-09-23T20:57:42.146``);
a UTC offset, if present, is dropped and the local wall-clock time kept. Issues name the file
line (header = line 1) and the canonical column (``ts`` for the date and time).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qlcore.data.errors import DataIssue
from qlcore.data.pipeline import finish, require
from qlcore.data.repair import RepairSpec, resolve_repairs
from qlcore.data.report import DataQualityReport
from qlcore.data.table import (
    COLUMNS,
    Finding,
    Table,
    clean_rows,
    parse_timestamps,
    table_from_text,
)

_ROLES = {"date": "date", "time": "time", "datetime": "ts", "timestamp": "ts", "ts": "ts"}
_ROLES.update({col: col for col in COLUMNS})
_IGNORED = frozenset({"adjclose", "openinterest"})
_TIME = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?")
_DATA_LIKE = re.compile(r"[-+]?\d[\d.:T -]*")
_FIELD_COUNT = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_EXPECTED = "Date[,Time] or Datetime, then Open, High, Low, Close, Volume"


@dataclass(frozen=True, slots=True)
class _Layout:
    width: int  # fields per row
    ts: tuple[int, ...]  # positions joined by a space to form the timestamp
    values: dict[str, int]  # canonical column -> position


def load_csv(
    path: str | os.PathLike[str], symbol: str | None = None, repair: RepairSpec = False
) -> pd.DataFrame:
    """Load a bar CSV as the canonical frame; DataValidationError names the first bad line.

    ``repair`` is ``True`` (all), ``False`` (none) or names from ``REPAIRS``.
    """
    return require(*read_csv_bars(path, symbol, repair))


def read_csv_bars(
    path: str | os.PathLike[str], symbol: str | None = None, repair: RepairSpec = False
) -> tuple[pd.DataFrame | None, DataQualityReport]:
    """The frame (None if invalid) and the quality report for a bar CSV; does not raise on bad data."""
    repairs = resolve_repairs(repair)
    file = Path(path).expanduser().resolve()
    data = file.read_bytes()
    table, issues, findings = _parse(data, str(file))
    return finish(
        table,
        issues,
        findings,
        source=str(file),
        symbol=symbol or symbol_from_path(file),
        repairs=repairs,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def symbol_from_path(path: str | os.PathLike[str]) -> str:
    """The file stem's first part, upper-cased: ``orcl-1995-2014-daily.csv`` -> ``ORCL``."""
    stem = Path(path).stem
    return (re.split(r"[^A-Za-z0-9]+", stem)[0] or stem).upper()


def _parse(data: bytes, source: str) -> tuple[Table | None, list[DataIssue], list[Finding]]:
    def fail(row: int | None, reason: str, kind: str) -> tuple[None, list[DataIssue], list]:
        return None, [DataIssue(source, row, None, reason, kind)], []

    if not data.strip():
        return fail(None, "file is empty", "no_rows")
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=""))
    header = [name.strip() for name in next(reader)]
    layout, issues = _layout(header, next(reader, None), source)
    if layout is None:
        return None, issues, []
    fast = _read_numbers(data, layout, source)
    if fast is not None:
        return fast, issues, []
    try:
        raw = _read(data, layout, object)
    except pd.errors.EmptyDataError:
        return fail(None, "no data rows after the header", "no_rows")
    except pd.errors.ParserError as exc:
        found = _FIELD_COUNT.search(str(exc))
        if found is None:
            raise
        expected, line, saw = (int(g) for g in found.groups())
        return fail(line, f"expected {expected} fields, found {saw}", "field_count")
    rows = len(raw)
    while rows and all(cell == "" for cell in raw.iloc[rows - 1]):
        rows -= 1  # blank lines at the end of the file
    if rows == 0:
        return fail(None, "no data rows after the header", "no_rows")
    table, findings = table_from_text(_text(raw.iloc[:rows], layout), source)
    return table, issues, findings


def _read_numbers(data: bytes, layout: _Layout, source: str) -> Table | None:
    """The fast path: None unless every value parses as a float and every timestamp as ISO 8601.

    Anything else goes through the string path, which words each problem; the strings are
    read again only if a later check needs to quote them.
    """
    dtypes: dict[str, Any] = {f"f{p}": "float64" for p in layout.values.values()}
    dtypes |= {f"f{p}": object for p in layout.ts}
    try:
        raw = _read(data, layout, dtypes)
    except ValueError:  # a cell that is not a number, a ragged row, no rows
        return None
    bars = pd.DataFrame({"ts": parse_timestamps(_stamps(raw, layout))})
    for col, pos in layout.values.items():
        bars[col] = raw[f"f{pos}"].to_numpy("float64")
    bars.index = pd.RangeIndex(2, len(bars) + 2)
    if len(bars) == 0 or not clean_rows(bars).all():
        return None
    return Table(bars, source, True, read_text=lambda: _text(_read(data, layout, object), layout))


def _read(data: bytes, layout: _Layout, dtype: Any) -> pd.DataFrame:
    return pd.read_csv(
        io.BytesIO(data),
        header=None,
        skiprows=1,
        names=[f"f{i}" for i in range(layout.width)],
        dtype=dtype,
        na_filter=False,
        skip_blank_lines=False,  # keeps row i on file line i + 2
        index_col=False,
        encoding="utf-8-sig",
        engine="c",
    )


def _stamps(raw: pd.DataFrame, layout: _Layout) -> pd.Series:
    stamp = raw[f"f{layout.ts[0]}"]
    for pos in layout.ts[1:]:
        stamp = stamp + " " + raw[f"f{pos}"]
    return stamp


def _text(raw: pd.DataFrame, layout: _Layout) -> pd.DataFrame:
    text = pd.DataFrame({"ts": _stamps(raw, layout)})
    for col, pos in layout.values.items():
        text[col] = raw[f"f{pos}"]
    text.index = pd.RangeIndex(2, len(text) + 2)
    return text


def _layout(
    header: list[str], first: list[str] | None, source: str
) -> tuple[_Layout | None, list[DataIssue]]:
    issues: list[DataIssue] = []

    def flag(column: str | None, reason: str, kind: str) -> None:
        issues.append(DataIssue(source, 1, column, reason, kind))

    keys = [re.sub(r"[\s_\-]", "", name.lower()) for name in header]
    if header and keys[0] not in _ROLES and _DATA_LIKE.fullmatch(header[0]):
        flag(
            None,
            f"no header row: line 1 starts with {header[0]!r}; expected {_EXPECTED}",
            "no_header",
        )
        return None, issues
    if first and "date" in keys and "time" not in keys and len(first) == len(header) + 1:
        at = keys.index("date") + 1
        if _TIME.fullmatch(first[at].strip()):  # header lacks the Time name its rows carry
            header = [*header[:at], "Time", *header[at:]]
            keys = [*keys[:at], "time", *keys[at:]]
    positions: dict[str, int] = {}
    for pos, (name, key) in enumerate(zip(header, keys, strict=True)):
        role = _ROLES.get(key)
        if role is None:
            if key not in _IGNORED:
                flag(name, f"unknown column {name!r}; expected {_EXPECTED}", "unknown_column")
        elif role in positions:
            flag(name, f"duplicate column {name!r}", "duplicate_column")
        else:
            positions[role] = pos
    ts: tuple[int, ...] = ()
    if "ts" in positions:
        if "date" in positions or "time" in positions:
            flag(None, "both a Datetime column and Date/Time columns", "duplicate_column")
        ts = (positions["ts"],)
    elif "date" in positions:
        ts = (positions["date"],) + ((positions["time"],) if "time" in positions else ())
    else:
        flag(None, f"missing timestamp column; expected {_EXPECTED}", "missing_column")
    for col in COLUMNS:
        if col not in positions:
            flag(col, f"missing column {col!r}; expected {_EXPECTED}", "missing_column")
    if not ts or any(col not in positions for col in COLUMNS):
        return None, issues
    return _Layout(len(header), ts, {col: positions[col] for col in COLUMNS}), issues
