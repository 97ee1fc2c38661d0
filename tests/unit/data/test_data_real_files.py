"""The real market data files in ../shared/data load with the right rows, times and prices."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from qlcore.data import DataValidationError, inspect_file, list_datasets, load_csv

pytestmark = pytest.mark.shared_data

# file -> (symbol, rows, first ts, first close, last ts, last close, frequency)
DAILY_AND_INTRADAY = {
    "orcl-1995-2014-daily.csv": (
        "ORCL", 5036, "1995-01-03", 2.117284, "2014-12-31", 44.970001, "1D"
    ),
    "nvda-1999-2014-daily.csv": (
        "NVDA", 4012, "1999-01-22", 1.640625, "2014-12-31", 20.049999, "1D"
    ),
    "yhoo-1996-2015-daily.csv": (
        "YHOO", 4965, "1996-04-12", 1.375, "2015-12-31", 33.259998, "1D"
    ),
    "futures-2006-5min.csv": (
        "FUTURES", 2142, "2006-01-02 09:05", 3582.99, "2006-01-30 17:30", 3677.52, "5min"
    ),
    "futures-2006-01-02-1min.csv": (
        "FUTURES", 30889, "2006-01-02 09:01", 3599.0, "2006-02-27 22:00", 3838.0, "1min"
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", DAILY_AND_INTRADAY)
def test_real_file_loads_with_known_rows_span_and_prices(shared_data, name):
    symbol, rows, first, first_close, last, last_close, freq = DAILY_AND_INTRADAY[name]
    path = shared_data / name
    df = load_csv(path)
    assert len(df) == rows
    assert (df.index[0], df["close"].iloc[0]) == (pd.Timestamp(first), first_close)
    assert (df.index[-1], df["close"].iloc[-1]) == (pd.Timestamp(last), last_close)
    assert df.attrs == {
        "symbol": symbol,
        "source": str(path.resolve()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "frequency": freq,
    }
    assert df.index.is_monotonic_increasing and df.index.is_unique


def test_row_count_is_the_file_lines_minus_the_header(shared_data):
    path = shared_data / "orcl-1995-2014-daily.csv"
    lines = path.read_text().count("\n")
    assert lines == 5037
    assert len(load_csv(path)) == lines - 1


def test_yahoo_close_is_the_traded_close_not_adj_close(shared_data):
    df = load_csv(shared_data / "orcl-1995-2014-daily.csv")
    first = df.iloc[0]
    # line 2: 1995-01-03,2.179012,2.191358,2.117284,2.117284,1.883304,36301200
    assert first.to_dict() == {
        "open": 2.179012,
        "high": 2.191358,
        "low": 2.117284,
        "close": 2.117284,
        "volume": 36301200.0,
    }


def test_one_minute_file_with_a_header_short_of_its_time_column_loads(shared_data):
    path = shared_data / "futures-2006-01-02-1min.csv"
    header = path.read_text().splitlines()[0]
    assert header == "Date,Open,High,Low,Close,Volume,OpenInterest"  # the file really is wrong
    df = load_csv(path)
    assert len(df) == 30889
    # line 2: 2006-01-02,09:01:00,3602.00,3603.00,3597.00,3599.00,5699,0
    assert df.index[0] == pd.Timestamp("2006-01-02 09:01:00")
    assert df.iloc[0].to_dict() == {
        "open": 3602.0,
        "high": 3603.0,
        "low": 3597.0,
        "close": 3599.0,
        "volume": 5699.0,
    }
    assert df.index[1] - df.index[0] == pd.Timedelta("1min")
    assert df.index[-1] == pd.Timestamp("2006-02-27 22:00:00")
    assert df.index.normalize().nunique() == 41  # trading days, each with intraday times
    assert (df.index.hour >= 9).all()




def test_five_minute_file_has_zero_volume_which_is_allowed(shared_data):
    df = load_csv(shared_data / "futures-2006-5min.csv")
    assert (df["volume"] == 0).all()
    assert (df.index.to_series().diff().dropna() >= pd.Timedelta("5min")).all()


def test_tick_file_has_two_trades_in_one_millisecond(shared_data):
    path = shared_data / "futures-2015-09-23-ticks.csv"
    with pytest.raises(DataValidationError) as caught:
        load_csv(path)
    assert (caught.value.row, caught.value.column) == (24, "ts")
    assert caught.value.kind == "duplicate_timestamp"
    assert "2015-09-23T20:58:22.316" in caught.value.reason
    assert "line 23" in caught.value.reason


def test_tick_file_loads_with_same_millisecond_trades_merged(shared_data):
    df = load_csv(shared_data / "futures-2015-09-23-ticks.csv", repair={"merge"})
    assert len(df) == 134  # 135 ticks, two of them in the same millisecond
    assert df.index[0] == pd.Timestamp("2015-09-23 20:57:42.146")
    assert df.index[-1] == pd.Timestamp("2015-09-23 21:00:00.238")
    assert df.attrs["frequency"] == "tick"
    # lines 23-24: 3068 x 60 then 3069 x 1 at 20:58:22.316
    assert df.loc[pd.Timestamp("2015-09-23 20:58:22.316")].to_dict() == {
        "open": 3068.0,
        "high": 3069.0,
        "low": 3068.0,
        "close": 3069.0,
        "volume": 61.0,
    }


def test_inspect_reports_each_real_file(shared_data):
    report = inspect_file(shared_data / "futures-2015-09-23-ticks.csv")
    assert (report.rows, report.frequency, report.ok) == (135, "tick", False)
    assert [issue.row for issue in report.issues] == [24]
    assert "line 24, column 'ts': duplicate timestamp" in str(report)
    assert inspect_file(shared_data / "nvda-1999-2014-daily.csv").ok


def test_list_datasets_lists_every_shared_file_and_its_error(shared_data):
    listing = list_datasets([shared_data]).set_index("name")
    files = listing[listing["kind"] == "file"]
    assert sorted(files.index) == sorted(p.name for p in shared_data.glob("*.csv"))
    assert files.loc["futures-2006-01-02-1min.csv", "rows"] == 30889
    assert files.loc["orcl-1995-2014-daily.csv", "start"] == pd.Timestamp("1995-01-03")
    assert "line 24" in files.loc["futures-2015-09-23-ticks.csv", "error"]
    assert files.drop(index="futures-2015-09-23-ticks.csv")["error"].isna().all()


def test_yahoo_file_traded_adjusted_uses_adj_close(shared_data):
    df = load_csv(shared_data / "orcl-1995-2014-daily.csv", adjusted=True)
    first = df.iloc[0]
    # line 2: 1995-01-03,2.179012,2.191358,2.117284,2.117284,1.883304,36301200
    factor = 1.883304 / 2.117284
    assert first["close"] == pytest.approx(1.883304, abs=1e-12)
    assert first["open"] == pytest.approx(2.179012 * factor, rel=1e-12)
    assert first["volume"] == pytest.approx(36301200 / factor, rel=1e-12)
    assert (df["close"] * df["volume"]).iloc[0] == pytest.approx(2.117284 * 36301200, rel=1e-12)  # value traded kept
    assert df.attrs["adjusted"] is True and len(df) == 5036


@pytest.mark.parametrize("name", ["orcl-1995-2014-daily.csv", "nvda-1999-2014-daily.csv", "yhoo-1996-2015-daily.csv"])
def test_real_daily_files_have_every_nyse_session(shared_data, name):
    report = inspect_file(shared_data / name, calendar="XNYS")
    assert report.ok and report.complete
    assert report.calendar is not None and report.calendar.sessions == DAILY_AND_INTRADAY[name][1]


def test_real_futures_files_are_on_the_xetra_calendar_not_nyse(shared_data):
    path = shared_data / "futures-2006-01-02-1min.csv"
    xetr = inspect_file(path, calendar="XETR")
    assert xetr.complete and xetr.calendar is not None and xetr.calendar.sessions == 41
    nyse = inspect_file(path, calendar="XNYS").calendar
    assert nyse is not None and [str(g) for g in nyse.gaps] == [
        "bars on 2006-01-02, which is not an XNYS session",  # New Year observed
        "bars on 2006-01-16, which is not an XNYS session",  # Martin Luther King Day
        "bars on 2006-02-20, which is not an XNYS session",  # Presidents' Day
    ]


def test_real_daily_file_resampled_to_weeks_keeps_totals_and_extremes(shared_data):
    from qlcore.data import resample_bars

    df = load_csv(shared_data / "orcl-1995-2014-daily.csv")
    weekly = resample_bars(df, "1W")
    assert weekly["volume"].sum() == df["volume"].sum()
    assert weekly["high"].max() == df["high"].max() and weekly["low"].min() == df["low"].min()
    # the first week: 1995-01-03 (Tue) .. 1995-01-06 (Fri)
    assert weekly.index[0] == pd.Timestamp("1995-01-06")
    assert weekly.iloc[0]["open"] == 2.179012 and weekly.iloc[0]["close"] == df.loc["1995-01-06", "close"]
    assert 1040 <= len(weekly) <= 1045  # twenty years of weeks
