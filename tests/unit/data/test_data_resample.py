"""Bars to higher timeframes: OHLCV aggregation by hand and as a property, labels on sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlcore.data import resample_bars, synthetic_bars

NY = "America/New_York"


def _daily(rows: list[tuple[str, float, float, float, float, float]], tz: str | None = None) -> pd.DataFrame:
    index = pd.DatetimeIndex([pd.Timestamp(r[0]) for r in rows], name="ts")
    df = pd.DataFrame([r[1:] for r in rows], index=index, columns=["open", "high", "low", "close", "volume"])
    return df.tz_localize(tz) if tz else df


# two weeks around Good Friday 2019-04-19 (no session): the second week ends on Thursday
WEEKS = [
    ("2019-04-08", 10, 12, 9, 11, 100),
    ("2019-04-09", 11, 13, 10, 12, 200),
    ("2019-04-10", 12, 12.5, 8, 9, 300),
    ("2019-04-11", 9, 10, 8.5, 9.5, 400),
    ("2019-04-12", 9.5, 11, 9, 10, 500),
    ("2019-04-15", 10, 10.5, 9.8, 10.2, 10),
    ("2019-04-16", 10.2, 14, 10, 13, 20),
    ("2019-04-17", 13, 13.5, 7, 8, 30),
    ("2019-04-18", 8, 9, 7.5, 8.5, 40),
]


def test_daily_to_weekly_matches_a_hand_computation():
    weekly = resample_bars(_daily(WEEKS), "1W")
    expected = pd.DataFrame(
        {"open": [10.0, 10.0], "high": [13.0, 14.0], "low": [8.0, 7.0], "close": [10.0, 8.5], "volume": [1500.0, 100.0]},
        index=pd.DatetimeIndex(["2019-04-12", "2019-04-18"], name="ts"),  # each week's last session
    )
    pd.testing.assert_frame_equal(weekly, expected)


def test_label_first_labels_by_the_first_session():
    weekly = resample_bars(_daily(WEEKS), "1W", label="first")
    assert list(weekly.index) == [pd.Timestamp("2019-04-08"), pd.Timestamp("2019-04-15")]


def test_a_tz_aware_frame_keeps_its_zone_and_weeks_on_the_exchange_clock():
    weekly = resample_bars(_daily(WEEKS, tz=NY), "1W")
    assert str(weekly.index.tz) == NY
    assert list(weekly.index) == [pd.Timestamp("2019-04-12", tz=NY), pd.Timestamp("2019-04-18", tz=NY)]
    assert weekly["volume"].tolist() == [1500.0, 100.0]


def test_monthly_bars_end_on_the_last_session_of_the_month():
    days = pd.bdate_range("2020-01-01", "2020-03-31")
    frame = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 1.0}, index=days.rename("ts"))
    monthly = resample_bars(frame, "ME")
    assert list(monthly.index.strftime("%Y-%m-%d")) == ["2020-01-31", "2020-02-28", "2020-03-31"]
    assert monthly["volume"].tolist() == [23.0, 20.0, 22.0]


def test_hour_bars_are_anchored_at_the_session_open_not_at_the_hour():
    minutes = pd.date_range("2020-01-02 09:30", "2020-01-02 15:59", freq="1min", tz=NY)
    df = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 1.0}, index=minutes.rename("ts"))
    hourly = resample_bars(df, "1h")
    assert list(hourly.index.strftime("%H:%M")) == ["10:29", "11:29", "12:29", "13:29", "14:29", "15:29", "15:59"]
    assert hourly["volume"].tolist() == [60.0] * 6 + [30.0]


def test_intraday_bins_never_span_two_days():
    df = synthetic_bars(900, start="2020-01-02 09:30")  # one-minute bars running past midnight
    four_hours = resample_bars(df, "4h")
    # day one 09:30..23:59 (870 bars): bins from 09:30, 13:30, 17:30, 21:30; day two 00:00..00:29
    assert list(four_hours.index.strftime("%d %H:%M")) == ["02 13:29", "02 17:29", "02 21:29", "02 23:59", "03 00:29"]
    assert four_hours["volume"].sum() == df["volume"].sum()
    assert four_hours["high"].iloc[-1] == df["high"].iloc[-30:].max()


@pytest.mark.parametrize("rule", ["1W", "ME", "1h", "bogus"])
def test_a_bad_frame_or_rule_is_refused(rule):
    df = _daily(WEEKS)
    if rule == "bogus":
        with pytest.raises(ValueError, match="rule 'bogus' is not a pandas frequency"):
            resample_bars(df, rule)
        return
    with pytest.raises(ValueError, match="strictly increasing"):
        resample_bars(df.iloc[::-1], rule)


@st.composite
def bar_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(1, 60))
    gaps = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))  # days between bars, weekends and all
    start = pd.Timestamp("2021-01-01") + pd.Timedelta(days=draw(st.integers(0, 400)))
    index = start + pd.to_timedelta(np.cumsum(gaps), unit="D")
    price = st.floats(1.0, 1000.0, allow_nan=False)
    lows = np.array(draw(st.lists(price, min_size=n, max_size=n)))
    spans = np.array(draw(st.lists(st.floats(0.0, 50.0), min_size=n, max_size=n)))
    where = np.array(draw(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=n, max_size=n)))
    highs = lows + spans
    volume = np.array(draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)), dtype="float64")
    return pd.DataFrame(
        {"open": lows + spans * where[:, 0], "high": highs, "low": lows, "close": lows + spans * where[:, 1],
         "volume": volume},
        index=pd.DatetimeIndex(index, name="ts"),
    )


@settings(max_examples=150)
@given(df=bar_frames(), rule=st.sampled_from(["1W", "W-FRI", "ME", "QE"]), tz=st.sampled_from([None, NY]))
def test_resampled_bars_aggregate_each_period_exactly(df, rule, tz):
    if tz:
        df = df.tz_localize(tz)
    out = resample_bars(df, rule)
    # the periods, computed independently of pandas' time grouping, on the exchange's wall clock
    wall = df.index.tz_localize(None) if tz else df.index
    key = {
        "1W": wall.isocalendar().year.to_numpy() * 100 + wall.isocalendar().week.to_numpy(),
        "W-FRI": (wall + pd.to_timedelta((4 - wall.day_of_week) % 7, unit="D")).normalize().asi8,
        "ME": wall.year * 100 + wall.month,
        "QE": wall.year * 10 + wall.quarter,
    }[rule]
    groups = pd.DataFrame(df.to_numpy(), columns=df.columns).groupby(np.asarray(key), sort=True)
    assert len(out) == groups.ngroups
    assert out["open"].tolist() == [g["open"].iloc[0] for _, g in groups]
    assert out["high"].tolist() == [g["high"].max() for _, g in groups]
    assert out["low"].tolist() == [g["low"].min() for _, g in groups]
    assert out["close"].tolist() == [g["close"].iloc[-1] for _, g in groups]
    assert out["volume"].tolist() == [g["volume"].sum() for _, g in groups]
    last = [df.index[g.index[-1]] for _, g in groups]
    assert list(out.index) == last  # each bar labelled by the last bar of its period
