"""What can be wrong with market data: one issue, the error that carries it, unknown symbols."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DataIssue:
    """One problem in market data, located by file line (header = line 1) or frame position.

    ``row`` is the 1-based line number in the file when ``in_file`` is true, otherwise the
    0-based position in the frame; ``None`` means the table as a whole (a header problem).
    ``kind`` is a short code such as ``"high_below_low"`` that tests and reports can match on.
    """

    source: str
    row: int | None
    column: str | None
    reason: str
    kind: str
    in_file: bool = True

    @property
    def location(self) -> str:
        """Where, e.g. ``"line 57, column 'high'"``; empty for the source as a whole."""
        parts = []
        if self.row is not None:
            parts.append(f"{'line' if self.in_file else 'row'} {self.row}")
        if self.column is not None:
            parts.append(f"column {self.column!r}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.location
        return f"{self.source} {where}: {self.reason}" if where else f"{self.source}: {self.reason}"


class DataValidationError(ValueError):
    """Market data broke a validation rule; names the source, line (or row), column and reason."""

    def __init__(
        self,
        source: str,
        row: int | None,
        column: str | None,
        reason: str,
        kind: str = "invalid",
        in_file: bool = True,
    ) -> None:
        self.issue = DataIssue(source, row, column, reason, kind, in_file)
        self.source = source
        self.row = row
        self.column = column
        self.reason = reason
        self.kind = kind
        super().__init__(str(self.issue))

    @classmethod
    def from_issue(cls, issue: DataIssue) -> DataValidationError:
        """The error for one issue (the first bad row of a load)."""
        return cls(issue.source, issue.row, issue.column, issue.reason, issue.kind, issue.in_file)


class UnknownSymbolError(KeyError):
    """A sample symbol that the embedded data set does not have."""

    def __init__(self, symbol: str, valid: tuple[str, ...]) -> None:
        self.symbol = symbol
        self.valid = valid
        super().__init__(f"unknown sample symbol {symbol!r}; valid symbols: {', '.join(valid)}")

    def __str__(self) -> str:  # KeyError would repr-quote the message
        return str(self.args[0])


class DataOptionError(ValueError):
    """A loader option that is unknown, malformed, or contradicts another: names the option and why."""

    def __init__(self, option: str, reason: str) -> None:
        self.option = option
        self.reason = reason
        super().__init__(f"{option}: {reason}")
