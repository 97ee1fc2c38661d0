"""Files the default reader refuses, each read with the option that says how, or refused naming it."""

from __future__ import annotations

import pandas as pd
import pytest

from qlcore.data import (
    CsvOptions,
    DataOptionError,
    DataValidationError,
    check_bars,
    inspect_file,
    load_csv,
)
from qlcore.data.parquet import load_parquet, save_parquet
from qlcore.data.synthetic import synthetic_bars

NY = "America/New_York"
VALUES = "10,11,9,10.5,1000"


# -- epoch timestamps ---------------------------------------------------------------------------


def test_epoch_seconds_are_refused_without_a_unit_naming_the_option(write_csv):
    path = write_csv(["Datetime,Open,High,Low,Close,Volume", f"1577975400,{VALUES}"])
    with pytest.raises(DataValidationError) as caught:
        load_csv(path)
    assert (caught.value.row, caught.value.column, caught.value.kind) == (2, "ts", "bad_timestamp")
    assert "looks like an epoch number" in caught.value.reason and "--timestamp-unit" in caught.value.reason


def test_epoch_seconds_load_as_utc_and_land_in_the_exchange_zone(write_csv):
    # 1577975400 = 2020-01-02 14:30 UTC = 09:30 in New York
    path = write_csv(["Datetime,Open,High,Low,Close,Volume", f"1577975400,{VALUES}", f"1577975460,{VALUES}"])
    utc = load_csv(path, timestamp_unit="s")
    assert list(utc.index) == [pd.Timestamp("2020-01-02 14:30", tz="UTC"), pd.Timestamp("2020-01-02 14:31", tz="UTC")]
    ny = load_csv(path, timestamp_unit="s", exchange_tz=NY)
    assert ny.index[0] == pd.Timestamp("2020-01-02 09:30", tz=NY)
    assert ny.index.asi8[0] == 1577975400 * 10**9  # UTC nanoseconds underneath, as the engine counts
    assert ny.attrs["frequency"] == "1min"


def test_epoch_milliseconds_and_nanoseconds_keep_their_precision(write_csv):
    ms = write_csv(["ts,open,high,low,close,volume", f"1577975400123,{VALUES}"], name="ms.csv")
    assert load_csv(ms, timestamp_unit="ms").index[0] == pd.Timestamp("2020-01-02 14:30:00.123", tz="UTC")
    ns = write_csv(["ts,open,high,low,close,volume", f"1577975400123456789,{VALUES}"], name="ns.csv")
    assert load_csv(ns, timestamp_unit="ns").index.asi8[0] == 1577975400123456789  # not rounded through a float


def test_a_non_number_in_an_epoch_file_is_named(write_csv):
    path = write_csv(["ts,open,high,low,close,volume", f"1577975400,{VALUES}", f"2020-01-02,{VALUES}"])
    with pytest.raises(DataValidationError) as caught:
        load_csv(path, timestamp_unit="s")
    assert caught.value.row == 3
    assert caught.value.reason == "timestamp '2020-01-02' is not a number of s since the epoch"


# -- day-first dates and formats ----------------------------------------------------------------


def test_day_first_dates_are_refused_without_the_option_naming_it(write_csv):
    path = write_csv(["Date,Open,High,Low,Close,Volume", f"31/01/2020,{VALUES}"])
    with pytest.raises(DataValidationError) as caught:
        load_csv(path)
    assert "unparseable timestamp '31/01/2020'" in caught.value.reason
    assert "dayfirst (--dayfirst)" in caught.value.reason and "date_format (--date-format)" in caught.value.reason


def test_an_ambiguous_slash_date_is_never_guessed(write_csv):
    path = write_csv(["Date,Open,High,Low,Close,Volume", f"01/02/2020,{VALUES}"])
    with pytest.raises(DataValidationError):
        load_csv(path)  # January 2 or February 1: the file must say
    assert load_csv(path, dayfirst=True).index[0] == pd.Timestamp("2020-02-01")
    assert load_csv(path, date_format="%m/%d/%Y").index[0] == pd.Timestamp("2020-01-02")


def test_day_first_dates_with_times_in_two_columns_load(write_csv):
    path = write_csv([
        "Date,Time,Open,High,Low,Close,Volume",
        f"31.01.2020,09:30,{VALUES}",
        f"03.02.2020,09:30,{VALUES}",
    ])
    df = load_csv(path, dayfirst=True)
    assert list(df.index) == [pd.Timestamp("2020-01-31 09:30"), pd.Timestamp("2020-02-03 09:30")]


def test_dayfirst_on_a_year_first_file_is_refused(write_csv, good_lines):
    with pytest.raises(DataValidationError) as caught:
        load_csv(write_csv(good_lines), dayfirst=True)
    assert "does not write the day first" in caught.value.reason


def test_a_row_not_matching_the_date_format_is_named(write_csv):
    path = write_csv(["Date,Open,High,Low,Close,Volume", f"31/01/2020,{VALUES}", f"2020-02-03,{VALUES}"])
    with pytest.raises(DataValidationError) as caught:
        load_csv(path, date_format="%d/%m/%Y")
    assert (caught.value.row, caught.value.reason) == (3, "timestamp '2020-02-03' does not match date_format '%d/%m/%Y'")


# -- delimiters ----------------------------------------------------------------------------------


def test_semicolon_file_is_refused_naming_the_option_and_loads_with_it(write_csv, good_lines):
    path = write_csv([line.replace(",", ";") for line in good_lines], name="semi.csv")
    with pytest.raises(DataValidationError) as caught:
        load_csv(path)
    assert caught.value.kind == "wrong_delimiter" and "--delimiter ';'" in caught.value.reason
    commas = load_csv(write_csv(good_lines, name="commas.csv"))
    pd.testing.assert_frame_equal(load_csv(path, delimiter=";"), commas, check_like=False, check_flags=False)


def test_tab_separated_file_loads_with_the_tab_delimiter(write_csv, good_lines):
    path = write_csv([line.replace(",", "\t") for line in good_lines], name="tabs.csv")
    assert load_csv(path, delimiter="\t")["close"].tolist() == [10.5, 11.0, 11.5, 12.0]


# -- adjusted prices -----------------------------------------------------------------------------


ADJ = [
    "Date,Open,High,Low,Close,Adj Close,Volume",
    "2020-01-02,10,12,8,10,5,1000",  # a 2:1 split later: adjusted prices are half
    "2020-01-03,5,6,4,5.5,5.5,2000",
]


def test_adj_close_is_not_applied_by_default_and_the_report_says_so(write_csv):
    path = write_csv(ADJ)
    assert load_csv(path)["close"].tolist() == [10.0, 5.5]
    assert "prices as traded: the file's Adj Close is not applied" in str(inspect_file(path))


def test_adjusted_scales_prices_by_adj_close_and_volume_inversely(write_csv):
    path = write_csv(ADJ)
    df = load_csv(path, adjusted=True)
    assert df.iloc[0].to_dict() == {"open": 5.0, "high": 6.0, "low": 4.0, "close": 5.0, "volume": 2000.0}
    assert df.iloc[1].to_dict() == {"open": 5.0, "high": 6.0, "low": 4.0, "close": 5.5, "volume": 2000.0}
    assert df.attrs["adjusted"] is True
    report = inspect_file(path, options=CsvOptions(adjusted=True))
    assert "prices adjusted: open, high, low and close scaled by Adj Close / Close" in str(report)


def test_adjusted_without_an_adj_close_column_is_refused(write_csv, good_lines):
    with pytest.raises(DataValidationError) as caught:
        load_csv(write_csv(good_lines), adjusted=True)
    assert "adjusted (--adjusted) needs an 'Adj Close' column" in caught.value.reason


@pytest.mark.parametrize(("cell", "reason"), [("0", "adj_close 0 is zero"), ("", "empty value"), ("x", "non-numeric value 'x'")])
def test_a_bad_adj_close_is_named_when_adjusting(write_csv, cell, reason):
    path = write_csv([ADJ[0], ADJ[1], f"2020-01-03,5,6,4,5.5,{cell},2000"])
    with pytest.raises(DataValidationError) as caught:
        load_csv(path, adjusted=True)
    assert (caught.value.row, caught.value.column) == (3, "adj_close")
    assert reason in caught.value.reason
    assert len(load_csv(path)) == 2  # the traded prices need no Adj Close


# -- time zones ----------------------------------------------------------------------------------


# 09:30 in New York is 14:30 UTC in winter and 13:30 UTC once DST starts (2020-03-08)
UTC_ACROSS_DST = [
    "Datetime,Open,High,Low,Close,Volume",
    f"2020-03-06T14:30:00Z,{VALUES}",
    f"2020-03-09T13:30:00+00:00,{VALUES}",
]


def test_a_utc_file_across_dst_lands_at_the_session_open_in_the_exchange_zone(write_csv):
    df = load_csv(write_csv(UTC_ACROSS_DST), exchange_tz=NY)
    assert list(df.index) == [pd.Timestamp("2020-03-06 09:30", tz=NY), pd.Timestamp("2020-03-09 09:30", tz=NY)]
    assert list(df.index.strftime("%H:%M")) == ["09:30", "09:30"]  # the session open on both sides of DST
    assert df.index.asi8[1] - df.index.asi8[0] == (3 * 24 - 1) * 3600 * 10**9  # the instants, unchanged


def test_a_utc_file_without_an_exchange_zone_stays_utc_and_the_report_says_so(write_csv):
    path = write_csv(UTC_ACROSS_DST)
    df = load_csv(path)
    assert str(df.index.tz) == "UTC"
    assert list(df.index.strftime("%H:%M")) == ["14:30", "13:30"]  # not a wall clock with its offset cut off
    assert "the file's UTC offsets kept, index in UTC" in str(inspect_file(path))


def test_naive_utc_times_with_tz_utc_land_in_the_exchange_zone(write_csv):
    lines = [UTC_ACROSS_DST[0], f"2020-03-06 14:30,{VALUES}", f"2020-03-09 13:30,{VALUES}"]
    df = load_csv(write_csv(lines), tz="UTC", exchange_tz=NY)
    assert list(df.index.strftime("%Y-%m-%d %H:%M")) == ["2020-03-06 09:30", "2020-03-09 09:30"]


def test_naive_times_given_a_zone_become_tz_aware_in_it(write_csv, good_lines):
    df = load_csv(write_csv(good_lines), exchange_tz=NY)
    assert df.index[0] == pd.Timestamp("2020-01-02", tz=NY)


def test_naive_times_mixed_with_offsets_are_refused_without_a_zone(write_csv):
    lines = [UTC_ACROSS_DST[0], f"2020-03-06T14:30:00Z,{VALUES}", f"2020-03-09 09:30,{VALUES}"]
    with pytest.raises(DataValidationError) as caught:
        load_csv(write_csv(lines))
    assert caught.value.row == 3
    assert "has no UTC offset, while line 2" in caught.value.reason and "(--tz)" in caught.value.reason
    assert load_csv(write_csv(lines), tz=NY).index[1] == pd.Timestamp("2020-03-09 09:30", tz=NY)


def test_a_wall_clock_time_that_dst_skips_is_named(write_csv):
    lines = [UTC_ACROSS_DST[0], f"2020-03-08 02:30,{VALUES}"]
    with pytest.raises(DataValidationError) as caught:
        load_csv(write_csv(lines), tz=NY)
    assert caught.value.reason == "timestamp '2020-03-08 02:30' does not exist in America/New_York (the clocks skip it for DST)"


def test_a_tz_aware_frame_stays_aware_through_checks_and_parquet(tmp_path):
    df = synthetic_bars(50, start="2020-03-06 09:30").tz_localize(NY)
    assert check_bars(df) == []
    path = tmp_path / "ny.parquet"
    save_parquet(df, path)
    loaded = load_parquet(path)
    assert str(loaded.index.tz) == NY
    assert (loaded.index.asi8 == df.index.asi8).all()


def test_the_repeated_hour_when_dst_ends_is_in_order_by_its_offsets(write_csv):
    # 01:50 EDT (05:50 UTC) then 01:10 EST (06:10 UTC): the wall clock goes back, time goes on
    lines = [UTC_ACROSS_DST[0], f"2020-11-01T01:50:00-04:00,{VALUES}", f"2020-11-01T01:10:00-05:00,{VALUES}"]
    df = load_csv(write_csv(lines), exchange_tz=NY)
    assert list(df.index.strftime("%H:%M %Z")) == ["01:50 EDT", "01:10 EST"]
    assert df.index.asi8[1] - df.index.asi8[0] == 20 * 60 * 10**9


# -- the options object --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named", "why"),
    [
        ({"timestamp_unit": "m"}, "timestamp_unit (--timestamp-unit)", "expected one of s, ms, us, ns"),
        ({"timestamp_unit": "s", "dayfirst": True}, "dayfirst (--dayfirst)", "epoch numbers are not dates"),
        ({"timestamp_unit": "s", "tz": NY}, "tz (--tz)", "UTC by definition"),
        ({"dayfirst": True, "date_format": "%d/%m/%Y"}, "dayfirst (--dayfirst)", "the format already says"),
        ({"date_format": "dd/mm/yyyy"}, "date_format (--date-format)", "no % directive"),
        ({"delimiter": ":"}, "delimiter (--delimiter)", "is not supported"),
        ({"tz": "Mars/Olympus"}, "tz (--tz)", "is not a time zone"),
        ({"exchange_tz": "EST5"}, "exchange_tz (--exchange-tz)", "is not a time zone"),
        ({"day_first": True}, "day_first", "unknown CSV option"),
    ],
)
def test_a_bad_option_or_combination_is_refused_naming_it(write_csv, good_lines, kwargs, named, why):
    with pytest.raises(DataOptionError) as caught:
        load_csv(write_csv(good_lines), **kwargs)
    assert str(caught.value).startswith(named) and why in str(caught.value)
