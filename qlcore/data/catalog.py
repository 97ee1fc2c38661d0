"""One entry point for every data set: load by name, inspect a file, list what is available."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from qlcore.data.csv import load_csv, read_csv_bars
from qlcore.data.errors import DataIssue, DataOptionError
from qlcore.data.options import CsvOptions, option_name
from qlcore.data.parquet import load_parquet, read_parquet_bars
from qlcore.data.repair import RepairSpec
from qlcore.data.report import DataQualityReport
from qlcore.data.sample import SAMPLE_SYMBOLS, load_sample
from qlcore.data.sessions import HOLE_SESSIONS, check_sessions
from qlcore.data.synthetic import synthetic_bars

LIST_COLUMNS = ("name", "kind", "rows", "start", "end", "frequency", "source", "error")
_SYNTHETIC = re.compile(r"synthetic:(\d+)(?::(\d+))?")
_READERS: dict[str, Callable[..., tuple[pd.DataFrame | None, DataQualityReport]]] = {
    ".csv": read_csv_bars,
    ".parquet": read_parquet_bars,
}


def load(spec: str | os.PathLike[str], **kw: Any) -> pd.DataFrame:
    """Load a sample symbol, a ``.csv`` / ``.parquet`` path, or ``synthetic:N[:seed]``."""
    text = os.fspath(spec).strip()
    if text.upper() in SAMPLE_SYMBOLS:
        return load_sample(text, **kw)
    synthetic = _SYNTHETIC.fullmatch(text)
    if synthetic:
        count, seed = synthetic.groups()
        if seed is not None:
            if "seed" in kw:
                raise TypeError(
                    f"{text!r} already gives a seed; seed={kw['seed']!r} was passed too"
                )
            kw["seed"] = int(seed)
        return synthetic_bars(int(count), **kw)
    suffix = Path(text).suffix.lower()
    if suffix == ".csv":
        return load_csv(text, **kw)
    if suffix == ".parquet":
        return load_parquet(text, **kw)
    raise ValueError(
        f"cannot load {text!r}: expected a sample symbol ({', '.join(SAMPLE_SYMBOLS)}), "
        "a path ending in .csv or .parquet, or 'synthetic:N' / 'synthetic:N:seed'"
    )


def inspect_file(
    path: str | os.PathLike[str],
    repair: RepairSpec = False,
    options: CsvOptions | None = None,
    calendar: str | None = None,
    hole_sessions: int = HOLE_SESSIONS,
) -> DataQualityReport:
    """The quality report of a ``.csv`` or ``.parquet`` bar file, without raising on bad data.

    ``options`` say how to read a CSV (a Parquet file takes only ``exchange_tz``). With a
    ``calendar`` (an exchange_calendars name such as ``XNYS``), a file that loads is compared with
    its sessions: missing sessions, holes of more than ``hole_sessions``, bars off the calendar.
    """
    file = Path(path)
    reader = _reader(file)
    options = options or CsvOptions()
    if reader is read_csv_bars:
        frame, report = read_csv_bars(path, repair=repair, options=options)
    else:
        not_parquet = [f.name for f in fields(CsvOptions)
                       if f.name != "exchange_tz" and getattr(options, f.name) != f.default]
        if not_parquet:
            raise DataOptionError(option_name(not_parquet[0]), f"applies to CSV files; {file.name} is Parquet")
        frame, report = read_parquet_bars(path, repair=repair, exchange_tz=options.exchange_tz)
    if calendar is not None and frame is not None:
        report = replace(report, calendar=check_sessions(frame, calendar, hole_sessions))
    return report


def list_datasets(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> pd.DataFrame:
    """Samples, the synthetic generator, and every *.csv / *.parquet file in ``extra_dirs``.

    A file that fails to load is listed with its first issue in ``error`` (missing when it loads).
    """
    rows = [_describe(symbol, "sample", load_sample(symbol)) for symbol in SAMPLE_SYMBOLS]
    rows.append(
        _entry("synthetic:N[:seed]", "synthetic", "qlcore.data.synthetic_bars", frequency="1min")
    )
    seen: set[Path] = set()
    for folder in extra_dirs:
        folder = Path(folder).expanduser().resolve()
        if folder in seen or not folder.is_dir():
            continue
        seen.add(folder)
        files = [f for f in folder.iterdir() if f.suffix.lower() in _READERS and f.is_file()]
        rows += [_describe_file(f) for f in sorted(files)]
    table = pd.DataFrame(rows, columns=list(LIST_COLUMNS))
    table["rows"] = table["rows"].astype("Int64")
    for col in ("start", "end"):
        table[col] = pd.to_datetime(table[col])
    return table


def _reader(path: Path) -> Callable[..., tuple[pd.DataFrame | None, DataQualityReport]]:
    try:
        return _READERS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"cannot inspect {str(path)!r}: expected a .csv or .parquet file"
        ) from None


def _entry(name: str, kind: str, source: str, **fields: Any) -> dict[str, Any]:
    blank = dict.fromkeys(LIST_COLUMNS)
    return blank | {"name": name, "kind": kind, "source": source} | fields


def _describe(name: str, kind: str, frame: pd.DataFrame) -> dict[str, Any]:
    return _entry(
        name,
        kind,
        frame.attrs["source"],
        rows=len(frame),
        start=frame.index[0],
        end=frame.index[-1],
        frequency=frame.attrs["frequency"],
    )


def _describe_file(path: Path) -> dict[str, Any]:
    try:
        frame, report = _reader(path)(path)
    except (OSError, ValueError) as exc:  # unreadable, undecodable or corrupt: list, don't abort
        return _entry(path.name, "file", str(path), error=f"{type(exc).__name__}: {exc}")
    if frame is not None:
        return _describe(path.name, "file", frame)
    return _entry(
        path.name,
        "file",
        str(path),
        rows=report.rows,
        start=report.start,
        end=report.end,
        frequency=report.frequency,
        error=_without_source(report.issues[0]),
    )


def _without_source(issue: DataIssue) -> str:
    # the listing shows the source in its own column
    return f"{issue.location}: {issue.reason}" if issue.location else issue.reason
