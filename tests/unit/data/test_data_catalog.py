"""load() by spec, Parquet and CSV round trips, inspection reports and the dataset listing."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from qlcore.data import (
    DataQualityReport,
    DataValidationError,
    check_bars,
    inspect_file,
    list_datasets,
    load,
    load_csv,
    load_parquet,
    load_sample,
    save_parquet,
    synthetic_bars,
)


def located(err: DataValidationError) -> tuple[int | None, str | None, str]:
    return err.row, err.column, err.kind


def test_load_sample_symbol():
    df = load("IBM")
    assert (len(df), df.attrs["source"]) == (3270, "sample:IBM")
    assert load("ibm").attrs["symbol"] == "IBM"


def test_load_synthetic_with_and_without_seed():
    pd.testing.assert_frame_equal(load("synthetic:200"), synthetic_bars(200, seed=0))
    seeded = load("synthetic:150:7", freq="1h")
    pd.testing.assert_frame_equal(seeded, synthetic_bars(150, seed=7, freq="1h"))
    assert seeded.attrs["source"] == "synthetic:seed=7"


def test_load_synthetic_refuses_two_seeds():
    with pytest.raises(TypeError, match="seed"):
        load("synthetic:10:1", seed=2)


def test_load_csv_and_parquet_paths(tmp_path, csv_with):
    csv_path = csv_with({})
    assert len(load(str(csv_path))) == 4
    save_parquet(load_csv(csv_path), tmp_path / "bars.parquet")
    assert len(load(str(tmp_path / "bars.parquet"))) == 4
    assert len(load(csv_with({5: "2020-01-06,11,12,10.8,11.5,900"}), repair="dedupe")) == 3


@pytest.mark.parametrize("spec", ["TSLA", "bars.txt", "synthetic:", "synthetic:x", ""])
def test_load_rejects_other_specs_listing_what_is_accepted(spec):
    with pytest.raises(ValueError) as caught:
        load(spec)
    message = str(caught.value)
    assert all(word in message for word in ("AAPL", "MSFT", ".csv", ".parquet", "synthetic:N"))


def test_load_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(str(tmp_path / "nope.csv"))


def test_parquet_round_trip_keeps_values_and_symbol(tmp_path):
    original = load_sample("GOOG")
    path = tmp_path / "goog.parquet"
    save_parquet(original, path)
    loaded = load_parquet(path)
    pd.testing.assert_frame_equal(loaded, original, check_exact=True, check_freq=False)
    assert loaded.attrs["symbol"] == "GOOG"
    assert loaded.attrs["source"] == str(path.resolve())
    assert loaded.attrs["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_parquet(path, symbol="ALPHA").attrs["symbol"] == "ALPHA"


def test_save_parquet_refuses_an_invalid_frame(tmp_path):
    df = synthetic_bars(10)
    df.iloc[4, df.columns.get_loc("low")] = df.iloc[4]["high"] + 1
    with pytest.raises(DataValidationError) as caught:
        save_parquet(df, tmp_path / "bad.parquet")
    assert (caught.value.row, caught.value.column) == (4, "high")
    assert not (tmp_path / "bad.parquet").exists()


def test_bad_parquet_names_the_zero_based_row(tmp_path):
    df = synthetic_bars(10)
    df.iloc[8, df.columns.get_loc("volume")] = -1.0
    path = tmp_path / "bad.parquet"
    df.to_parquet(path)
    with pytest.raises(DataValidationError) as caught:
        load_parquet(path)
    assert located(caught.value) == (8, "volume", "negative_volume")
    assert str(caught.value).startswith(f"{path.resolve()} row 8, column 'volume'")


def test_parquet_with_ts_column_and_tz_aware_times_stays_tz_aware(tmp_path):
    df = synthetic_bars(5, start="2020-01-02 09:30").tz_localize("America/New_York")
    path = tmp_path / "ny.parquet"
    df.reset_index().to_parquet(path)
    loaded = load_parquet(path)
    assert str(loaded.index.tz) == "America/New_York"
    assert loaded.index[0] == pd.Timestamp("2020-01-02 09:30", tz="America/New_York")
    assert loaded.index.asi8[0] == pd.Timestamp("2020-01-02 14:30", tz="UTC").value  # UTC ns underneath
    in_london = load_parquet(path, exchange_tz="Europe/London")
    assert in_london.index[0] == pd.Timestamp("2020-01-02 14:30", tz="Europe/London")


def test_canonical_frame_round_trips_through_to_csv(tmp_path):
    original = synthetic_bars(2000, seed=11, symbol="SYN")
    path = tmp_path / "syn-bars.csv"
    original.to_csv(path)
    assert path.read_text().splitlines()[0] == "ts,open,high,low,close,volume"
    loaded = load_csv(path)
    pd.testing.assert_frame_equal(loaded, original, check_exact=True, check_freq=False)
    assert loaded.attrs["symbol"] == "SYN"


def test_csv_symbol_can_be_given(csv_with):
    assert load_csv(csv_with({}), symbol="ES").attrs["symbol"] == "ES"


def test_intraday_date_and_time_columns_are_joined(write_csv):
    path = write_csv(
        [
            "Date,Time,Open,High,Low,Close,Volume,OpenInterest",
            "2006-01-02,09:05:00,3578.73,3587.88,3578.73,3582.99,0,0",
            "2006-01-02,09:10:00,3583.01,3588.40,3583.01,3588.03,0,0",
        ]
    )
    df = load_csv(path)
    assert list(df.index) == [pd.Timestamp("2006-01-02 09:05"), pd.Timestamp("2006-01-02 09:10")]
    assert df.attrs["frequency"] == "5min"


def test_report_text_and_html_for_a_bad_file(csv_with):
    path = csv_with({3: "2020-01-03,10.50,9.00,10.00,9.50,1200", 5: "2020-01-07,<b>,1,1,1,1"})
    report = inspect_file(path)
    assert isinstance(report, DataQualityReport)
    assert (report.rows, report.ok, report.frequency) == (4, False, "1D")
    assert (report.start, report.end) == (pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-07"))
    assert [(i.row, i.column) for i in report.issues] == [(3, "high"), (5, "open")]
    text = str(report)
    assert "4 rows, 2020-01-02 00:00:00 .. 2020-01-07 00:00:00, frequency 1D" in text
    assert "line 3, column 'high': high 9.00 is below low 10.00" in text
    assert "issues: 2" in text
    html = report._repr_html_()
    assert html.count("<table>") == 2
    assert "&lt;b&gt;" in html and "<b>" not in html


def test_report_for_a_good_file_says_no_issues(csv_with):
    report = inspect_file(csv_with({}), repair="sort")
    assert report.ok and report.issues == [] and report.repairs == {"sort": 0}
    assert "issues: none" in str(report)
    assert "repairs: sort 0" in str(report)


def test_inspect_rejects_other_extensions(tmp_path):
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        inspect_file(tmp_path / "bars.json")


def test_list_datasets_covers_samples_synthetic_and_files(tmp_path, csv_with):
    good = csv_with({}, name="abc-daily.csv")
    csv_with({4: "2020-01-06,11.00,9.00,10.80,11.50,900"}, name="bad.csv")
    save_parquet(load_csv(good), tmp_path / "abc.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    (tmp_path / "notes.txt").write_text("ignored")

    listing = list_datasets([tmp_path, tmp_path / "missing"])
    assert list(listing.columns) == [
        "name", "kind", "rows", "start", "end", "frequency", "source", "error"
    ]  # fmt: skip
    assert list(listing["name"]) == [
        "AAPL", "GOOG", "IBM", "MSFT", "synthetic:N[:seed]",
        "abc-daily.csv", "abc.parquet", "bad.csv", "junk.parquet",
    ]  # fmt: skip
    rows = listing.set_index("name")
    assert list(rows["kind"].unique()) == ["sample", "synthetic", "file"]
    assert rows.loc["AAPL", "rows"] == 3270
    assert rows.loc["abc-daily.csv", "rows"] == 4
    assert rows.loc["abc-daily.csv", "end"] == pd.Timestamp("2020-01-07")
    assert rows.loc["abc.parquet", "frequency"] == "1D"
    assert "line 4, column 'high'" in rows.loc["bad.csv", "error"]
    assert rows.loc["bad.csv", "rows"] == 4
    assert rows.loc["junk.parquet", "error"]
    assert rows.loc[["AAPL", "abc-daily.csv", "abc.parquet"], "error"].isna().all()
    assert pd.isna(rows.loc["synthetic:N[:seed]", "start"])
    assert pd.isna(rows.loc["synthetic:N[:seed]", "rows"])


def test_report_words_the_first_thousand_issues_and_counts_all(write_csv):
    rows = [f"2020-01-02 09:{m // 60:02d}:{m % 60:02d},10,11,9,10,-1" for m in range(3600)]
    path = write_csv(["ts,open,high,low,close,volume", *rows])
    report = inspect_file(path)
    assert (len(report.issues), report.issue_count) == (1000, 3600)
    assert [issue.row for issue in report.issues[:3]] == [2, 3, 4]
    assert "issues: 3,600" in str(report)
    assert "... and 3,580 more" in str(report)


def test_check_bars_limit_keeps_the_first_rows():
    df = synthetic_bars(100)
    df["volume"] = -1.0
    assert [issue.row for issue in check_bars(df, limit=3)] == [0, 1, 2]
