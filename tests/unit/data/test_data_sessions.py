"""Missing sessions and holes against an exchange calendar, through `qlcore data check`."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlcore.cli import main
from qlcore.data import DataOptionError, check_sessions, load_csv

HEADER = "Date,Open,High,Low,Close,Volume"


def _xnys(start: str, end: str) -> pd.DatetimeIndex:
    import exchange_calendars as xcals

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = xcals.get_calendar("XNYS", start="2018-01-01", end="2021-12-31")
    return pd.DatetimeIndex(cal.sessions_in_range(start, end))


def _write_days(path: Path, days: pd.DatetimeIndex) -> Path:
    rows = [f"{d:%Y-%m-%d},10,11,9,10.5,1000" for d in days]
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


@pytest.fixture
def gappy(tmp_path: Path) -> tuple[Path, pd.DatetimeIndex, pd.DatetimeIndex]:
    """Two years of XNYS sessions less a 3.5-month hole and 50 single missing sessions."""
    sessions = _xnys("2019-01-02", "2020-12-31")
    hole = sessions[(sessions >= "2019-06-01") & (sessions <= "2019-09-15")]
    later = sessions[sessions >= "2020-01-06"]
    singles = later[::4][:50]  # every fourth session: never two in a row
    kept = sessions.difference(hole).difference(singles)
    return _write_days(tmp_path / "gappy.csv", kept), hole, singles


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["qlcore", *args])
    with pytest.raises(SystemExit) as ended:
        main()
    out, err = capsys.readouterr()
    return int(ended.value.code or 0), out, err


def test_a_hole_and_fifty_missing_sessions_fail_data_check_naming_the_dates(gappy, monkeypatch, capsys):
    path, hole, singles = gappy
    code, out, err = _run(monkeypatch, capsys, "data", "check", str(path))
    assert code == 1, out + err
    assert "issues: none" in out  # every row is valid: what is wrong is what is not there
    assert f"hole: {len(hole)} XNYS sessions missing, 2019-06-03 .. 2019-09-13" in out
    for day in singles:
        assert f"missing session {day:%Y-%m-%d}\n" in out
    assert f"gaps: {len(hole) + 50} XNYS sessions missing, 1 hole of more than 5 sessions" in out
    assert err.startswith(f"error: {path}: {len(hole) + 50} XNYS sessions missing")


def test_allow_gaps_reports_them_and_exits_0(gappy, monkeypatch, capsys):
    path, hole, _ = gappy
    code, out, err = _run(monkeypatch, capsys, "data", "check", str(path), "--allow-gaps")
    assert code == 0
    assert f"hole: {len(hole)} XNYS sessions missing" in out and "allowed by --allow-gaps" in err


def test_calendar_none_skips_the_session_check(gappy, monkeypatch, capsys):
    code, out, _ = _run(monkeypatch, capsys, "data", "check", str(gappy[0]), "--calendar", "none")
    assert code == 0 and "calendar XNYS" not in out and "missing" not in out


def test_a_file_with_every_session_passes(tmp_path, monkeypatch, capsys):
    path = _write_days(tmp_path / "full.csv", _xnys("2019-01-02", "2019-12-31"))
    code, out, err = _run(monkeypatch, capsys, "data", "check", str(path))
    assert (code, err) == (0, "")
    assert "calendar XNYS: 252 sessions 2019-01-02 .. 2019-12-31, every one with bars; gaps: none" in out


def test_hole_sessions_sets_where_a_gap_becomes_a_hole(tmp_path):
    sessions = _xnys("2019-01-02", "2019-03-29")
    df = load_csv(_write_days(tmp_path / "f.csv", sessions.delete(slice(10, 13))))  # three in a row
    assert [g.kind for g in check_sessions(df).gaps] == ["missing"]
    assert str(check_sessions(df).gaps[0]) == f"3 missing sessions {sessions[10]:%Y-%m-%d} .. {sessions[12]:%Y-%m-%d}"
    assert [g.kind for g in check_sessions(df, hole_sessions=2).gaps] == ["hole"]


def test_a_bar_on_a_holiday_is_off_the_calendar(tmp_path):
    days = _xnys("2019-06-03", "2019-07-12").append(pd.DatetimeIndex(["2019-07-04"])).sort_values()
    check = check_sessions(load_csv(_write_days(tmp_path / "f.csv", days)))
    assert [str(g) for g in check.gaps] == ["bars on 2019-07-04, which is not an XNYS session"]
    assert (check.missing, check.off_calendar) == (0, 1)


def test_intraday_utc_bars_are_dated_by_the_exchange_day(tmp_path):
    # 2019-07-03 and 2019-07-05 sessions at 19:55 New York = 23:55 UTC: the UTC date is the next day
    path = tmp_path / "late.csv"
    path.write_text("Datetime,Open,High,Low,Close,Volume\n"
                    "2019-07-03T23:55:00Z,10,11,9,10.5,1\n2019-07-05T23:55:00Z,10,11,9,10.5,1\n")
    check = check_sessions(load_csv(path), "XNYS")
    assert check.ok and check.sessions == 2


def test_an_unknown_calendar_is_named(tmp_path):
    df = load_csv(_write_days(tmp_path / "f.csv", _xnys("2019-01-02", "2019-01-31")))
    with pytest.raises(DataOptionError) as caught:
        check_sessions(df, "NYSE?")
    assert str(caught.value).startswith("calendar (--calendar): 'NYSE?' is not an exchange calendar")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--dayfirst", "--date-format", "%d/%m/%Y"], "dayfirst (--dayfirst): cannot be combined with date_format"),
        (["--timestamp-unit", "m"], "timestamp_unit (--timestamp-unit): 'm' is not a unit"),
        (["--tz", "Mars/Olympus"], "tz (--tz): 'Mars/Olympus' is not a time zone"),
        (["--calendar", "NOPE"], "calendar (--calendar): 'NOPE' is not an exchange calendar"),
    ],
)
def test_data_check_refuses_a_bad_option_with_exit_2(tmp_path, monkeypatch, capsys, args, said):
    path = _write_days(tmp_path / "f.csv", _xnys("2019-01-02", "2019-01-31"))
    code, _, err = _run(monkeypatch, capsys, "data", "check", str(path), *args)
    assert code == 2 and err.startswith(f"error: {said}"), err
    assert "Traceback" not in err


def test_data_check_reads_with_the_options(tmp_path, monkeypatch, capsys):
    days = _xnys("2019-01-02", "2019-01-31")
    path = tmp_path / "eu.csv"
    path.write_text("\n".join(["Date;Open;High;Low;Close;Adj Close;Volume",
                               *(f"{d:%d/%m/%Y};10;11;9;10;5;1000" for d in days)]) + "\n")
    code, _, err = _run(monkeypatch, capsys, "data", "check", str(path))
    assert code == 2 and "--delimiter ';'" in err
    code, out, err = _run(monkeypatch, capsys, "data", "check", str(path), "--delimiter", ";", "--dayfirst",
                          "--adjusted", "--exchange-tz", "America/New_York")
    assert (code, err) == (0, ""), err
    assert "2019-01-02 00:00:00-05:00 .. 2019-01-31 00:00:00-05:00" in out
    assert "prices adjusted" in out and "every one with bars" in out


def test_a_parquet_file_refuses_csv_options(tmp_path, monkeypatch, capsys):
    df = load_csv(_write_days(tmp_path / "f.csv", _xnys("2019-01-02", "2019-01-31")))
    path = tmp_path / "f.parquet"
    df.to_parquet(path)
    code, _, err = _run(monkeypatch, capsys, "data", "check", str(path), "--dayfirst")
    assert code == 2 and "dayfirst (--dayfirst): applies to CSV files; f.parquet is Parquet" in err
    code, out, _ = _run(monkeypatch, capsys, "data", "check", str(path), "--exchange-tz", "America/New_York")
    assert code == 0 and "every one with bars" in out


def test_missing_sessions_are_counted_once_per_session(tmp_path):
    sessions = _xnys("2019-01-02", "2019-12-31")
    rng = np.random.default_rng(7)
    drop = np.sort(rng.choice(np.arange(1, len(sessions) - 1), size=40, replace=False))
    df = load_csv(_write_days(tmp_path / "f.csv", sessions.delete(drop)))
    check = check_sessions(df, hole_sessions=1000)
    assert check.missing == 40 and check.sessions == len(sessions)
    named = [d for g in check.gaps for d in pd.bdate_range(g.first, g.last) if d in sessions]
    assert pd.DatetimeIndex(named).equals(sessions[drop])
