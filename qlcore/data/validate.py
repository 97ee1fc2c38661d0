"""The rules every bar frame must pass, as vectorized checks that name the first bad row.

Rules, in the order they are reported within one row (issue ``kind`` in brackets):

- the table: missing [missing_column], unknown [unknown_column] or duplicate [duplicate_column]
  columns; a CSV row with the wrong number of fields
  [field_count]; no data rows [no_rows]; a CSV without a header [no_header]; a file that cannot be
  read [not_a_file, unreadable, not_parquet], is not UTF-8 [not_utf8], has a line of more than a
  megabyte [line_too_long], fields not separated by commas [wrong_delimiter] or a broken quote
  [malformed];
- each cell: empty [empty_value], NaN [nan_value], non-numeric or infinite [non_numeric] values,
  unparseable timestamps [bad_timestamp];
- each bar: a price that is zero or negative [non_positive_price]; a price above `MAX_PRICE`
  [price_too_large] or a volume above `MAX_VOLUME` [volume_too_large] (finite, but no market's, and
  beyond them float64 arithmetic on the bar loses cents or overflows); negative volume
  [negative_volume]; high below low [high_below_low]; open or close outside [low, high]
  [open_outside_range, close_outside_range];
- the sequence: a timestamp seen before, with the same values [duplicate_row] or different
  values [duplicate_timestamp]; a timestamp earlier than one before it [out_of_order].

Zero volume is allowed (index feeds publish it). Rows with unparseable cells are left out of the
bar and sequence rules: they already carry an issue.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd

from qlcore.data.errors import DataIssue, DataValidationError
from qlcore.data.table import COLUMNS, PRICES, Finding, Table, table_from_frame

MAX_ISSUES = 1000  # issues worded in a report; the rest are only counted
# the largest price and volume accepted: a float64 holds every cent below 1e13, and every whole
# share below 9e15; prices like 1e308 are finite but overflow once multiplied by a quantity
MAX_PRICE = 1e12
MAX_VOLUME = 1e15


def check_bars(
    df: pd.DataFrame, source: str = "<frame>", limit: int = MAX_ISSUES
) -> list[DataIssue]:
    """The first ``limit`` issues of an in-memory bar frame, in row order (0-based positions)."""
    table, issues, findings = table_from_frame(df, source)
    if table is not None:
        findings += bar_findings(table) + sequence_findings(table)
    return collect(table, issues, findings, limit)[0]


def validate_bars(df: pd.DataFrame, source: str = "<frame>") -> None:
    """Raise DataValidationError for the first bad row of a bar frame; return None if valid."""
    issues = check_bars(df, source, limit=1)
    if issues:
        raise DataValidationError.from_issue(issues[0])


def collect(
    table: Table | None, issues: list[DataIssue], findings: list[Finding], limit: int
) -> tuple[list[DataIssue], int]:
    """Whole-table issues, then the first rows in input order (rule order within a row),
    at most ``limit`` in all; and the total number of issues."""
    total = len(issues) + sum(len(f.labels) for f in findings)
    if table is None or not findings or total == len(issues):
        return issues[:limit], total
    labels = np.concatenate([f.labels for f in findings])
    rules = np.concatenate([np.full(len(f.labels), k) for k, f in enumerate(findings)])
    worded = list(issues)
    for i in np.lexsort((rules, labels))[: max(limit - len(issues), 0)]:
        finding, label = findings[rules[i]], int(labels[i])
        worded.append(table.issue(label, finding.column, *finding.explain(label)))
    return worded[:limit], total


def bar_findings(table: Table) -> list[Finding]:
    """Price, volume and OHLC-range rules, for rows whose cells all parsed."""
    bars, show = table.bars, table.show
    clean = table.clean_mask()
    labels = bars.index.to_numpy()
    o, h, lo, c, v = (bars[col].to_numpy() for col in COLUMNS)
    findings = []
    for col, values in zip(PRICES, (o, h, lo, c), strict=True):

        def non_positive(lab: int, col: str = col) -> tuple[str, str]:
            sign = "zero" if bars.at[lab, col] == 0 else "negative"
            return (
                f"{col} {show(lab, col)} is {sign}; prices must be positive",
                "non_positive_price",
            )

        findings.append(Finding(labels[clean & (values <= 0)], col, non_positive))

        def too_large(lab: int, col: str = col) -> tuple[str, str]:
            return f"{col} {show(lab, col)} is above the largest price accepted, {MAX_PRICE:,.0f}", "price_too_large"

        findings.append(Finding(labels[clean & (values > MAX_PRICE)], col, too_large))
    findings.append(
        Finding(
            labels[clean & (v > MAX_VOLUME)],
            "volume",
            lambda lab: (f"volume {show(lab, 'volume')} is above the largest volume accepted, {MAX_VOLUME:,.0f}",
                         "volume_too_large"),
        )
    )
    findings.append(
        Finding(
            labels[clean & (v < 0)],
            "volume",
            lambda lab: (f"volume {show(lab, 'volume')} is negative", "negative_volume"),
        )
    )
    inverted = clean & (h < lo)
    findings.append(
        Finding(
            labels[inverted],
            "high",
            lambda lab: (
                f"high {show(lab, 'high')} is below low {show(lab, 'low')}",
                "high_below_low",
            ),
        )
    )
    ranged = clean & ~inverted  # an inverted bar has no range to be outside of
    for col, values in (("open", o), ("close", c)):

        def outside(lab: int, col: str = col) -> tuple[str, str]:
            # value columns are float64 (Table contract); the stubs type .at as any scalar
            below = cast(float, bars.at[lab, col]) < cast(float, bars.at[lab, "low"])
            side, bound = ("below", "low") if below else ("above", "high")
            reason = (
                f"{col} {show(lab, col)} is {side} {bound} {show(lab, bound)} "
                "(repair 'clip' widens the bar to include it)"
            )
            return reason, f"{col}_outside_range"

        findings.append(Finding(labels[ranged & ((values < lo) | (values > h))], col, outside))
    return findings


def sequence_findings(table: Table) -> list[Finding]:
    """Duplicate and out-of-order timestamps among rows whose timestamp parsed."""
    bars = table.bars
    sub = bars[bars["ts"].notna().to_numpy()]
    findings = [_duplicates(table, sub)]
    labels = sub.index.to_numpy()
    stamps = sub["ts"].to_numpy().astype("datetime64[ns]").view("int64")
    if len(stamps) < 2:
        return findings
    latest = np.maximum.accumulate(stamps)
    at_latest = np.maximum.accumulate(np.where(stamps == latest, np.arange(len(stamps)), 0))
    back = np.flatnonzero(stamps[1:] < latest[:-1]) + 1
    before = pd.Series(labels[at_latest[back - 1]], index=labels[back])

    def out_of_order(lab: int) -> tuple[str, str]:
        earlier = int(cast(int, before.at[lab]))  # labels are int64 row labels
        reason = (
            f"timestamp {table.show(lab, 'ts')} is earlier than {table.show(earlier, 'ts')} "
            f"on {table.unit} {earlier} (out of order; repair 'sort' fixes it)"
        )
        return reason, "out_of_order"

    findings.append(Finding(labels[back], "ts", out_of_order))
    return findings


def _duplicates(table: Table, sub: pd.DataFrame) -> Finding:
    # listed before out-of-order: a repeated time is the more specific diagnosis
    repeated = sub["ts"].duplicated(keep=False).to_numpy()
    if not repeated.any():
        return Finding(np.array([], dtype="int64"), "ts", lambda _: ("", ""))
    dups = sub[repeated]
    first = pd.Series(dups.index, index=dups.index).groupby(dups["ts"]).transform("first")
    firsts = dups.groupby("ts", sort=False)[list(COLUMNS)].transform("first")
    same = (dups[list(COLUMNS)] == firsts).all(axis=1)

    def duplicate(lab: int) -> tuple[str, str]:
        stamp, where = table.show(lab, "ts"), f"{table.unit} {first.at[lab]}"
        if same.at[lab]:
            reason = f"duplicate row: timestamp {stamp} and values repeat {where}"
            return f"{reason} (repair 'dedupe' drops it)", "duplicate_row"
        reason = f"duplicate timestamp {stamp}, already on {where} with different values"
        return f"{reason} (repair 'merge' combines them into one bar)", "duplicate_timestamp"

    later = dups["ts"].duplicated(keep="first").to_numpy()
    return Finding(dups.index.to_numpy()[later], "ts", duplicate)


_UNITS = (
    (86_400 * 10**9, "D"),
    (3_600 * 10**9, "h"),
    (60 * 10**9, "min"),
    (10**9, "s"),
)


def infer_frequency(index: pd.DatetimeIndex) -> str:
    """The median bar spacing as ``"1D"``, ``"5min"``, ``"1h"``, ``"30s"``; ``"tick"`` when it is
    not a whole number of seconds, ``"unknown"`` with fewer than two bars."""
    if len(index) < 2:
        return "unknown"
    if index.tz is not None:  # spacing on the exchange's clock: a day is a day across DST
        index = index.tz_localize(None)
    stamps = np.sort(index.as_unit("ns").asi8)
    step = round(float(np.median(np.diff(stamps))))
    for size, suffix in _UNITS:
        if step > 0 and step % size == 0:
            return f"{step // size}{suffix}"
    return "tick"
