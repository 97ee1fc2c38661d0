"""Load bar CSV files, recognising the layouts by their header.

Recognised headers (case, spaces and underscores in names are ignored):

- Yahoo daily ``Date,Open,High,Low,Close,Adj Close,Volume`` (bars use the traded prices unless
  ``adjusted=True``, which scales them by ``Adj Close / Close``; the report says which);
- intraday ``Date,Time,Open,High,Low,Close,Volume,OpenInterest`` (``OpenInterest`` is ignored);
- ticks ``Datetime,Open,High,Low,Close,Volume,OpenInterest`` with ISO timestamps;
- the canonical ``ts,open,high,low,close,volume`` written by ``DataFrame.to_csv``;
- a header naming ``Date`` but no ``Time`` while the rows carry one field more, the extra one
  right after the date and holding a time (the published ``futures-2006-01-02-1min.csv``):
  the missing ``Time`` name is inserted, the file is not rejected.

The file must be UTF-8 text (a byte-order mark is allowed) with lines of at most `MAX_LINE_BYTES`;
anything else (another encoding, binary data, a directory, a line of megabytes, fields separated by
another delimiter than ``options.delimiter``, an unterminated quote) is an issue naming the file and
the reason (and the option that reads it, where one does), never an exception from the parser.

Timestamps are ISO 8601 (``2006-01-02``, ``2006-01-02 09:01:00``, ``2015-09-23T20:57:42.146``)
unless `CsvOptions` says otherwise (epoch numbers, a ``strftime`` format, day-first dates). A UTC
offset is kept: the frame's index is then tz-aware (in the exchange's zone when one is given, else
UTC). Naive times stay naive unless a zone is given. Issues name the file line (header = line 1)
and the canonical column (``ts`` for the date and time, ``adj_close`` for Adj Close).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlcore.data.errors import DataIssue
from qlcore.data.options import DELIMITERS, CsvOptions, option_name
from qlcore.data.pipeline import finish, read_source, require, unreadable
from qlcore.data.repair import RepairSpec, resolve_repairs
from qlcore.data.report import DataQualityReport
from qlcore.data.table import (
    COLUMNS,
    PRICES,
    Finding,
    Table,
    _explain_bad_number,
    clean_rows,
    parse_timestamps,
    table_from_text,
)

_ROLES = {"date": "date", "time": "time", "datetime": "ts", "timestamp": "ts", "ts": "ts"}
_ROLES.update({col: col for col in COLUMNS}, adjclose="adj_close")
_IGNORED = frozenset({"openinterest"})
_TIME = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?")
_DATA_LIKE = re.compile(r"[-+]?\d[\d.:T -]*")
_FIELD_COUNT = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_EXPECTED = "Date[,Time] or Datetime, then Open, High, Low, Close, Volume"
MAX_LINE_BYTES = 1 << 20  # a row of bars is tens of bytes; a megabyte is not a row
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


@dataclass(frozen=True, slots=True)
class _Layout:
    width: int  # fields per row
    ts: tuple[int, ...]  # positions joined by a space to form the timestamp
    values: dict[str, int]  # canonical column -> position (and adj_close when adjusting)
    has_adj: bool = False  # the file has an Adj Close column


def load_csv(
    path: str | os.PathLike[str],
    symbol: str | None = None,
    repair: RepairSpec = False,
    options: CsvOptions | None = None,
    **option: Any,
) -> pd.DataFrame:
    """Load a bar CSV as the canonical frame; DataValidationError names the first bad line.

    ``repair`` is ``True`` (all), ``False`` (none) or names from ``REPAIRS``. ``options`` (or the
    same names as keywords: ``delimiter=";"``, ``dayfirst=True``, ``tz="UTC"``, ...) say how to
    read the file; see `CsvOptions`.
    """
    return require(*read_csv_bars(path, symbol, repair, options, **option))


def read_csv_bars(
    path: str | os.PathLike[str],
    symbol: str | None = None,
    repair: RepairSpec = False,
    options: CsvOptions | None = None,
    **option: Any,
) -> tuple[pd.DataFrame | None, DataQualityReport]:
    """The frame (None if invalid) and the quality report for a bar CSV; does not raise on bad data."""
    options = _options(options, option)
    repairs = resolve_repairs(repair)
    file = Path(path).expanduser().resolve()
    symbol = symbol or symbol_from_path(file)
    data, problem = read_source(file)
    if data is None:
        assert problem is not None
        return unreadable(problem, symbol)
    table, issues, findings = _parse(data, str(file), options)
    return finish(
        table,
        issues,
        findings,
        source=str(file),
        symbol=symbol,
        repairs=repairs,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def symbol_from_path(path: str | os.PathLike[str]) -> str:
    """The file stem's first part, upper-cased: ``orcl-1995-2014-daily.csv`` -> ``ORCL``."""
    stem = Path(path).stem
    return (re.split(r"[^A-Za-z0-9]+", stem)[0] or stem).upper()


def _options(options: CsvOptions | None, option: dict[str, Any]) -> CsvOptions:
    if not option:
        return options or CsvOptions()
    base = {} if options is None else {f.name: getattr(options, f.name) for f in fields(CsvOptions)}
    return CsvOptions.from_mapping(base | option)


def _parse(
    data: bytes, source: str, options: CsvOptions
) -> tuple[Table | None, list[DataIssue], list[Finding]]:
    def fail(row: int | None, reason: str, kind: str) -> tuple[None, list[DataIssue], list]:
        return None, [DataIssue(source, row, None, reason, kind)], []

    if not data.strip():
        return fail(None, "file is empty", "no_rows")
    problem = _encoding_problem(data) or _long_line(data)
    if problem is not None:
        return fail(*problem)
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=""),
                        delimiter=options.delimiter)
    try:
        header = [name.strip() for name in next(reader)]
        first = next(reader, None)
    except csv.Error as exc:
        return fail(reader.line_num, f"malformed CSV: {exc}", "malformed")
    layout, issues = _layout(header, first, source, options)
    if layout is None:
        return None, issues, []
    fast = _read_numbers(data, layout, source, options)
    if fast is not None:
        return _finish_table(fast, [], layout, options, issues)
    try:
        raw = _read(data, layout, object, options)
    except pd.errors.EmptyDataError:
        return fail(None, "no data rows after the header", "no_rows")
    except pd.errors.ParserError as exc:
        found = _FIELD_COUNT.search(str(exc))
        if found is None:  # an unterminated quote, and the like
            reason = str(exc).replace("Error tokenizing data. C error: ", "").strip()
            return fail(None, f"malformed CSV: {reason}", "malformed")
        expected, line, saw = (int(g) for g in found.groups())
        return fail(line, f"expected {expected} fields, found {saw}", "field_count")
    rows = len(raw)
    while rows and all(cell == "" for cell in raw.iloc[rows - 1]):
        rows -= 1  # blank lines at the end of the file
    if rows == 0:
        return fail(None, "no data rows after the header", "no_rows")
    table, findings = table_from_text(_text(raw.iloc[:rows], layout), source, options)
    return _finish_table(table, findings, layout, options, issues)


def _finish_table(
    table: Table, findings: list[Finding], layout: _Layout, options: CsvOptions, issues: list[DataIssue]
) -> tuple[Table, list[DataIssue], list[Finding]]:
    """Adjusted prices (or the note that Adj Close was not applied) and how the times were read."""
    notes = list(_zone_notes(table, options))
    if options.adjusted:
        table = _adjust(table, findings)
        notes.append("prices adjusted: open, high, low and close scaled by Adj Close / Close, volume by "
                     "Close / Adj Close")
    elif layout.has_adj:
        notes.append("prices as traded: the file's Adj Close is not applied (adjusted=True, --adjusted, "
                     "trades adjusted prices)")
    return replace(table, notes=tuple(notes)), issues, findings


def _zone_notes(table: Table, options: CsvOptions) -> list[str]:
    if table.zone is None:
        return []
    if options.timestamp_unit is not None:
        return [f"times: epoch {options.timestamp_unit} (UTC), index in {table.zone}"]
    if options.zone is None:
        return ["times: the file's UTC offsets kept, index in UTC (exchange_tz, --exchange-tz, "
                "puts it in the exchange's zone)"]
    naive = f"naive times read as {options.tz or options.exchange_tz}; " if options.tz else ""
    return [f"times: {naive}index in {table.zone}"]


def _adjust(table: Table, findings: list[Finding]) -> Table:
    """Scale prices by Adj Close / Close and volume inversely; a bad Adj Close is a finding."""
    bars = table.bars.copy()
    adj = bars.pop("adj_close").to_numpy(dtype="float64")
    close = bars["close"].to_numpy(dtype="float64")
    usable = np.isfinite(adj) & (adj > 0)
    factor = np.where(usable & np.isfinite(close) & (close > 0), adj / np.where(close > 0, close, 1.0), 1.0)
    for col in PRICES:
        bars[col] = bars[col].to_numpy() * factor
    bars["volume"] = bars["volume"].to_numpy() / factor
    values = pd.Series(adj, index=bars.index)

    def explain(label: int) -> tuple[str, str]:
        raw, value = table.show(label, "adj_close"), float(values[label])
        if np.isfinite(value):
            sign = "zero" if value == 0 else "negative"
            return f"adj_close {raw} is {sign}; adjusted prices need a positive Adj Close", "non_positive_price"
        return _explain_bad_number(raw, value)

    findings.append(Finding(bars.index.to_numpy()[~usable], "adj_close", explain))
    return replace(table, bars=bars, adjusted=True)


def _encoding_problem(data: bytes) -> tuple[int, str, str] | None:
    """(line, reason, kind) when the bytes are not UTF-8 text."""
    for bom, name in _BOMS.items():
        if data.startswith(bom):
            return 1, f"{name} text (byte-order mark {bom.hex(' ').upper()}); save the file as UTF-8", "not_utf8"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        return (line, f"not UTF-8 text: byte 0x{data[exc.start]:02x} at character {column} cannot be decoded "
                      "(another encoding, or not a text file); save the file as UTF-8", "not_utf8")
    return None


def _long_line(data: bytes) -> tuple[int, str, str] | None:
    """(line, reason, kind) for the first line longer than `MAX_LINE_BYTES`."""
    if len(data) <= MAX_LINE_BYTES:
        return None
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    lengths = np.diff(np.concatenate(([-1], ends, [len(data)]))) - 1
    too_long = np.flatnonzero(lengths > MAX_LINE_BYTES)
    if not len(too_long):
        return None
    i = int(too_long[0])
    return (i + 1, f"line is {int(lengths[i]):,} bytes long (limit {MAX_LINE_BYTES:,}): not a row of bars",
            "line_too_long")


def _read_numbers(data: bytes, layout: _Layout, source: str, options: CsvOptions) -> Table | None:
    """The fast path: None unless every value parses as a float and every timestamp as ISO 8601.

    Anything else goes through the string path, which words each problem; the strings are
    read again only if a later check needs to quote them.
    """
    dtypes: dict[str, Any] = {f"f{p}": "float64" for p in layout.values.values()}
    dtypes |= {f"f{p}": object for p in layout.ts}
    try:
        raw = _read(data, layout, dtypes, options)
    except ValueError:  # a cell that is not a number, a ragged row, no rows
        return None
    stamps = parse_timestamps(_stamps(raw, layout), options)
    bars = pd.DataFrame({"ts": stamps.ts})
    for col, pos in layout.values.items():
        bars[col] = raw[f"f{pos}"].to_numpy("float64")
    bars.index = pd.RangeIndex(2, len(bars) + 2)
    if len(bars) == 0 or not clean_rows(bars).all():
        return None
    if "adj_close" in bars and not (np.isfinite(bars["adj_close"]) & (bars["adj_close"] > 0)).all():
        return None
    return Table(bars, source, True, read_text=lambda: _text(_read(data, layout, object, options), layout),
                 zone=stamps.zone)


def _read(data: bytes, layout: _Layout, dtype: Any, options: CsvOptions) -> pd.DataFrame:
    return pd.read_csv(
        io.BytesIO(data),
        sep=options.delimiter,
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
    header: list[str], first: list[str] | None, source: str, options: CsvOptions
) -> tuple[_Layout | None, list[DataIssue]]:
    issues: list[DataIssue] = []

    def flag(column: str | None, reason: str, kind: str) -> None:
        issues.append(DataIssue(source, 1, column, reason, kind))

    if len(header) == 1:
        used = [sep for sep in DELIMITERS if sep != options.delimiter and sep in header[0]]
        if used:
            flag(None, f"the header's fields are separated by {DELIMITERS[used[0]]}, not "
                       f"{DELIMITERS[options.delimiter]}; give delimiter={used[0]!r} "
                       f"(--delimiter {used[0]!r}) to read it: {_EXPECTED}", "wrong_delimiter")
            return None, issues
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
    missing_adj = options.adjusted and "adj_close" not in positions
    if missing_adj:
        flag(None, f"{option_name('adjusted')} needs an 'Adj Close' column; the header has none: "
                   f"{','.join(header)}", "missing_column")
    if not ts or any(col not in positions for col in COLUMNS) or missing_adj:
        return None, issues
    values = {col: positions[col] for col in COLUMNS}
    if options.adjusted:
        values["adj_close"] = positions["adj_close"]
    return _Layout(len(header), ts, values, "adj_close" in positions), issues
