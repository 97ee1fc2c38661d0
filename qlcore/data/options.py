"""How to read a bar file whose layout the header alone does not tell: one frozen options object.

The defaults read what the loader always read: comma-separated, ISO 8601 timestamps, the traded
(unadjusted) prices, and naive times kept as written. Every option names a fact about the file
that cannot be guessed safely (is ``01/02/2006`` January or February? are naive times New York or
UTC?), so nothing is guessed: a file that needs an option fails with an issue saying which one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from qlcore.data.errors import DataOptionError

TIMESTAMP_UNITS = ("s", "ms", "us", "ns")
DELIMITERS = {",": "commas", ";": "';'", "\t": "tabs", "|": "'|'"}
# option -> its command-line spelling, so one message serves Python and `qlcore data check`
FLAGS = {
    "timestamp_unit": "--timestamp-unit",
    "date_format": "--date-format",
    "dayfirst": "--dayfirst",
    "delimiter": "--delimiter",
    "tz": "--tz",
    "exchange_tz": "--exchange-tz",
    "adjusted": "--adjusted",
}


def option_name(name: str) -> str:
    """``date_format (--date-format)``: how messages name an option."""
    return f"{name} ({FLAGS[name]})" if name in FLAGS else name


@dataclass(frozen=True, slots=True)
class CsvOptions:
    """Options of the CSV loader (all optional; the defaults read ISO 8601, comma-separated files).

    Parameters
    ----------
    timestamp_unit
        The timestamp column holds epoch numbers in this unit (``s``, ``ms``, ``us``, ``ns``);
        epoch times are UTC by definition.
    date_format
        A ``strftime`` format for the timestamp (date and time joined by a space when they are
        two columns), e.g. ``%d/%m/%Y %H:%M``; ``%z`` reads an offset.
    dayfirst
        Dates write the day before the month (``31/01/2006``); the layout is taken from the
        first timestamp and every row must follow it.
    delimiter
        The field separator: ``,`` (default), ``;``, a tab or ``|``.
    tz
        The IANA zone naive timestamps are written in, e.g. ``UTC`` or ``America/New_York``.
        Timestamps that carry an offset (``Z``, ``+01:00``) keep it.
    exchange_tz
        The exchange's zone: the frame's index is tz-aware in it. Defaults to ``tz``; with
        neither, naive files give a naive frame (exchange-local time as written) and files
        with offsets a frame in UTC.
    adjusted
        Trade adjusted prices: open, high, low and close are scaled by ``Adj Close / Close``
        and volume by its inverse (the traded value stays the same). Needs an ``Adj Close`` column.
    """

    timestamp_unit: str | None = None
    date_format: str | None = None
    dayfirst: bool = False
    delimiter: str = ","
    tz: str | None = None
    exchange_tz: str | None = None
    adjusted: bool = False

    def __post_init__(self) -> None:
        unit, fmt = self.timestamp_unit, self.date_format
        if unit is not None and unit not in TIMESTAMP_UNITS:
            raise DataOptionError(option_name("timestamp_unit"),
                                  f"{unit!r} is not a unit; expected one of {', '.join(TIMESTAMP_UNITS)}")
        if fmt is not None and "%" not in fmt:
            raise DataOptionError(option_name("date_format"),
                                  f"{fmt!r} has no % directive; expected a strftime format such as %d/%m/%Y")
        if unit is not None and (fmt is not None or self.dayfirst):
            other = "date_format" if fmt is not None else "dayfirst"
            raise DataOptionError(option_name(other),
                                  f"cannot be combined with {option_name('timestamp_unit')}: epoch numbers "
                                  "are not dates to lay out")
        if unit is not None and self.tz is not None and _canonical_zone(self.tz) != "UTC":
            raise DataOptionError(option_name("tz"),
                                  f"{self.tz!r} cannot apply to epoch timestamps, which are UTC by definition; "
                                  f"{option_name('exchange_tz')} chooses the zone of the frame")
        if self.dayfirst and fmt is not None:
            raise DataOptionError(option_name("dayfirst"),
                                  f"cannot be combined with {option_name('date_format')}: the format already "
                                  "says where the day is")
        if self.delimiter not in DELIMITERS:
            shown = ", ".join(DELIMITERS.values())
            raise DataOptionError(option_name("delimiter"), f"{self.delimiter!r} is not supported; expected {shown}")
        for name in ("tz", "exchange_tz"):
            zone = getattr(self, name)
            if zone is not None:
                _check_zone(name, zone)

    @property
    def zone(self) -> str | None:
        """The zone of the frame's index, when the options fix one."""
        return self.exchange_tz or self.tz

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> CsvOptions:
        """Build from keyword options, refusing names that are not options."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise DataOptionError(", ".join(unknown), f"unknown CSV option; known: {', '.join(known)}")
        return cls(**data)


def _check_zone(name: str, zone: str) -> None:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise DataOptionError(option_name(name),
                              f"{zone!r} is not a time zone; expected an IANA name such as America/New_York "
                              "or UTC") from None


def _canonical_zone(zone: str) -> str:
    return "UTC" if zone.upper() in ("UTC", "ETC/UTC", "Z", "ZULU", "GMT", "ETC/GMT") else zone
