"""Parsed table -> repairs -> checks -> canonical frame and report: one path for every loader."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from qlcore.data.errors import DataIssue, DataValidationError
from qlcore.data.repair import apply_repairs
from qlcore.data.report import DataQualityReport
from qlcore.data.table import COLUMNS, Finding, Table
from qlcore.data.validate import (
    MAX_ISSUES,
    bar_findings,
    collect,
    infer_frequency,
    sequence_findings,
)


def finish(
    table: Table | None,
    issues: list[DataIssue],
    findings: list[Finding],
    *,
    source: str,
    symbol: str,
    repairs: Iterable[str] = (),
    sha256: str | None = None,
    limit: int = MAX_ISSUES,
) -> tuple[pd.DataFrame | None, DataQualityReport]:
    """Repair, check, and build the canonical frame (None if any issue is left) and its report.

    ``issues`` are whole-table problems and ``findings`` the cells that did not parse; the report
    words the first ``limit`` issues. ``sha256`` is the digest of the input bytes; without one,
    the digest of the frame's canonical CSV rendering is used.
    """
    counts: dict[str, int] = {}
    if table is not None:
        table, counts = apply_repairs(table, tuple(repairs))
        findings = findings + bar_findings(table) + sequence_findings(table)
    worded, total = collect(table, issues, findings, limit)
    frame = None
    if table is not None and total == 0:
        frame = _canonical(table, symbol, source, sha256)
    return frame, _report(table, worded, total, counts, source)


def read_source(file: Path) -> tuple[bytes | None, DataIssue | None]:
    """The bytes of a bar file, or the issue that says why it cannot be read (a missing file still
    raises FileNotFoundError: the user named the wrong path, not a bad file)."""
    try:
        return file.read_bytes(), None
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        reason, kind = "is a directory, not a bar file", "not_a_file"
    except PermissionError:
        reason, kind = "cannot be read: permission denied", "unreadable"
    except OSError as exc:
        reason, kind = f"cannot be read: {exc.strerror or exc}", "unreadable"
    return None, DataIssue(str(file), None, None, reason, kind)


def unreadable(issue: DataIssue, symbol: str) -> tuple[None, DataQualityReport]:
    """The result of a load that could not read its source: no frame, a report with the issue."""
    return finish(None, [issue], [], source=issue.source, symbol=symbol)  # type: ignore[return-value]


def require(frame: pd.DataFrame | None, report: DataQualityReport) -> pd.DataFrame:
    """The frame, or DataValidationError for the first issue; nothing partial is returned."""
    if frame is None:
        raise DataValidationError.from_issue(report.issues[0])
    return frame


def csv_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of the frame rendered as canonical CSV (``ts,open,...``, ``\\n`` line ends)."""
    return hashlib.sha256(frame.to_csv(lineterminator="\n").encode()).hexdigest()


def _canonical(table: Table, symbol: str, source: str, sha256: str | None) -> pd.DataFrame:
    bars = table.bars
    index = table.index(bars["ts"].to_numpy())
    data = {col: bars[col].to_numpy(dtype="float64") for col in COLUMNS}
    frame = pd.DataFrame(data, index=index)
    frame.attrs.update(
        symbol=symbol,
        source=source,
        sha256=sha256 or csv_digest(frame),
        frequency=infer_frequency(index),
    )
    if table.adjusted:
        frame.attrs["adjusted"] = True
    return frame


def _report(
    table: Table | None,
    issues: list[DataIssue],
    total: int,
    counts: dict[str, int],
    source: str,
) -> DataQualityReport:
    if table is None:
        return DataQualityReport(source, 0, None, None, "unknown", issues, counts, total)
    stamps = table.bars["ts"].dropna()
    index = table.index(np.sort(stamps.to_numpy()))
    start = index[0] if len(index) else None
    end = index[-1] if len(index) else None
    frequency = infer_frequency(index)
    return DataQualityReport(source, len(table.bars), start, end, frequency, issues, counts, total,
                             notes=table.notes)
