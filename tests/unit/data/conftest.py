"""Small CSV files written to a temporary folder, line by line, so tests can name the bad line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

HEADER = "Date,Open,High,Low,Close,Volume"
# file lines 2..5 of a valid daily file
GOOD_ROWS = (
    "2020-01-02,10.00,11.00,9.50,10.50,1000",
    "2020-01-03,10.50,11.50,10.00,11.00,1200",
    "2020-01-06,11.00,12.00,10.80,11.50,900",
    "2020-01-07,11.50,12.50,11.20,12.00,1100",
)


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """``write_csv(lines, name=...)``: write the lines (header first) and return the path."""

    def write(lines: list[str], name: str = "test-bars.csv") -> Path:
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


@pytest.fixture
def good_lines() -> list[str]:
    """A valid 4-bar daily file, header first: list index == file line - 1."""
    return [HEADER, *GOOD_ROWS]


@pytest.fixture
def csv_with(write_csv: Callable[..., Path], good_lines: list[str]) -> Callable[..., Path]:
    """``csv_with({line: text, ...})``: the valid file with those file lines replaced."""

    def write(replacements: dict[int, str], name: str = "test-bars.csv") -> Path:
        lines = list(good_lines)
        for line, text in replacements.items():
            lines[line - 1] = text
        return write_csv(lines, name)

    return write
