"""A readable account of what loading one data set found and fixed."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

from qlcore.data.errors import DataIssue
from qlcore.data.sessions import CalendarCheck

_SHOWN = 20  # issues listed in text and HTML renderings; the rest are counted


@dataclass(frozen=True, slots=True)
class DataQualityReport:
    """Rows, time span, frequency, remaining issues and repairs applied (name -> rows changed).

    ``issues`` lists the first issues in input order (up to 1,000); ``issue_count`` counts all.
    ``notes`` say what the load did to the data (adjusted prices, time zones); ``calendar`` holds
    the comparison with an exchange calendar, when one was asked for (see `check_sessions`).
    """

    source: str
    rows: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    frequency: str
    issues: list[DataIssue] = field(default_factory=list)
    repairs: dict[str, int] = field(default_factory=dict)
    issue_count: int | None = None  # all issues found; ``issues`` lists the first of them
    notes: tuple[str, ...] = ()
    calendar: CalendarCheck | None = None

    def __post_init__(self) -> None:
        if self.issue_count is None:
            object.__setattr__(self, "issue_count", len(self.issues))

    @property
    def ok(self) -> bool:
        """True when nothing is left that would stop the load (gaps do not: see ``complete``)."""
        return not self.issues

    @property
    def complete(self) -> bool:
        """True when the calendar check, if any, found every session with bars and no bar off it."""
        return self.calendar is None or self.calendar.ok

    def _count(self) -> int:
        return len(self.issues) if self.issue_count is None else self.issue_count

    def _span(self) -> str:
        if self.start is None or self.end is None:
            return "no timestamps"
        return f"{self.start} .. {self.end}"

    def _repairs_text(self) -> str:
        return ", ".join(f"{name} {count:,}" for name, count in self.repairs.items()) or "none"

    def __str__(self) -> str:
        lines = [
            f"Data quality: {self.source}",
            f"  {self.rows:,} rows, {self._span()}, frequency {self.frequency}",
            f"  repairs: {self._repairs_text()}",
        ]
        lines += [f"  {note}" for note in self.notes]
        if not self.issues:
            lines.append("  issues: none")
        else:
            lines.append(f"  issues: {self._count():,}")
            for issue in self.issues[:_SHOWN]:
                where = issue.location
                lines.append(f"    {where}: {issue.reason}" if where else f"    {issue.reason}")
            if self._count() > _SHOWN:
                lines.append(f"    ... and {self._count() - _SHOWN:,} more")
        if self.calendar is not None:
            lines += [f"  {line}" for line in self.calendar.lines()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        summary = [
            ("source", self.source),
            ("rows", f"{self.rows:,}"),
            ("start", str(self.start) if self.start is not None else ""),
            ("end", str(self.end) if self.end is not None else ""),
            ("frequency", self.frequency),
            ("repairs", self._repairs_text()),
            *(("note", note) for note in self.notes),
            ("issues", f"{self._count():,}" if self.issues else "none"),
        ]
        if self.calendar is not None:
            summary += [("calendar", line.strip()) for line in self.calendar.lines()]
        parts = ["<table>"]
        parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary]
        parts.append("</table>")
        if self.issues:
            unit = "line" if self.issues[0].in_file else "row"
            parts.append(f"<table><tr><th>{unit}</th><th>column</th><th>problem</th></tr>")
            for issue in self.issues[:_SHOWN]:
                row = "" if issue.row is None else str(issue.row)
                parts.append(
                    f"<tr><td>{esc(row)}</td><td>{esc(issue.column or '')}</td>"
                    f"<td>{esc(issue.reason)}</td></tr>"
                )
            if self._count() > _SHOWN:
                more = self._count() - _SHOWN
                parts.append(f"<tr><td colspan='3'>... and {more:,} more</td></tr>")
            parts.append("</table>")
        return "".join(parts)
