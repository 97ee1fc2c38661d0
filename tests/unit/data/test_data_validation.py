"""Every validation rule, on a small bad CSV: the error names the file line, column and problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qlcore.data import (
    DataValidationError,
    check_bars,
    load_csv,
    synthetic_bars,
    validate_bars,
)


def located(err: DataValidationError) -> tuple[int | None, str | None, str]:
    return err.row, err.column, err.kind


def test_valid_file_loads_as_canonical_frame(write_csv, good_lines):
    path = write_csv(good_lines, name="abc-daily.csv")
    df = load_csv(path)
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in df.dtypes)
    assert df.index.name == "ts"
    assert df.index.tz is None
    assert df.index.is_monotonic_increasing and df.index.is_unique
    assert df.index[0] == pd.Timestamp("2020-01-02")
    assert df.loc["2020-01-06", "close"] == 11.5
    assert df.attrs["symbol"] == "ABC"
    assert df.attrs["source"] == str(path.resolve())
    assert df.attrs["frequency"] == "1D"


# (replaced file lines, expected line, column, words the reason must contain, kind)
CELL_AND_BAR_CASES = {
    "non_numeric": ({3: "2020-01-03,10.50,11.50,10.00,abc,1200"}, 3, "close", "non-numeric", "non_numeric"),
    "empty_value": ({4: "2020-01-06,11.00,,10.80,11.50,900"}, 4, "high", "empty value", "empty_value"),
    "nan_value": ({3: "2020-01-03,NaN,11.50,10.00,11.00,1200"}, 3, "open", "NaN", "nan_value"),
    "infinite_value": ({3: "2020-01-03,10.50,inf,10.00,11.00,1200"}, 3, "high", "not finite", "non_numeric"),
    "bad_timestamp": ({5: "2020-13-45,11.50,12.50,11.20,12.00,1100"}, 5, "ts", "unparseable timestamp", "bad_timestamp"),
    "empty_timestamp": ({4: ",11.00,12.00,10.80,11.50,900"}, 4, "ts", "empty timestamp", "empty_value"),
    "negative_price": ({3: "2020-01-03,10.50,11.50,-10.00,11.00,1200"}, 3, "low", "negative", "non_positive_price"),
    "zero_price": ({4: "2020-01-06,0,12.00,10.80,11.50,900"}, 4, "open", "zero", "non_positive_price"),
    "negative_volume": ({5: "2020-01-07,11.50,12.50,11.20,12.00,-5"}, 5, "volume", "negative", "negative_volume"),
    "high_below_low": ({3: "2020-01-03,10.50,9.00,10.00,9.50,1200"}, 3, "high", "below low", "high_below_low"),
    "open_above_high": ({4: "2020-01-06,12.50,12.00,10.80,11.50,900"}, 4, "open", "above high", "open_outside_range"),
    "open_below_low": ({4: "2020-01-06,10.00,12.00,10.80,11.50,900"}, 4, "open", "below low", "open_outside_range"),
    "close_below_low": ({2: "2020-01-02,10.00,11.00,9.50,9.40,1000"}, 2, "close", "below low", "close_outside_range"),
    "close_above_high": ({5: "2020-01-07,11.50,12.50,11.20,12.60,1100"}, 5, "close", "above high", "close_outside_range"),
    "out_of_order": ({4: "2020-01-01,11.00,12.00,10.80,11.50,900"}, 4, "ts", "earlier than", "out_of_order"),
    "duplicate_timestamp": ({4: "2020-01-03,11.00,12.00,10.80,11.50,900"}, 4, "ts", "duplicate timestamp", "duplicate_timestamp"),
    "duplicate_row": ({4: "2020-01-03,10.50,11.50,10.00,11.00,1200"}, 4, "ts", "duplicate row", "duplicate_row"),
}  # fmt: skip


@pytest.mark.parametrize("case", CELL_AND_BAR_CASES.values(), ids=CELL_AND_BAR_CASES.keys())
def test_bad_row_is_reported_with_its_file_line_and_column(csv_with, case):
    replacements, line, column, words, kind = case
    path = csv_with(replacements)
    with pytest.raises(DataValidationError) as caught:
        load_csv(path)
    err = caught.value
    assert (err.row, err.column, err.kind) == (line, column, kind)
    assert words in err.reason
    assert err.source == str(path.resolve())
    assert str(err).startswith(f"{path.resolve()} line {line}, column '{column}': ")


def test_message_quotes_the_values_as_written(csv_with):
    path = csv_with({3: "2020-01-03,2.15,2.10,2.20,2.15,1200"})
    with pytest.raises(DataValidationError) as caught:
        load_csv(path)
    assert (
        str(caught.value) == f"{path.resolve()} line 3, column 'high': high 2.10 is below low 2.20"
    )


def test_duplicate_names_the_line_it_repeats(csv_with):
    path = csv_with({5: "2020-01-03,11.00,12.00,10.80,11.50,900"})
    with pytest.raises(DataValidationError) as caught:
        load_csv(path)
    assert caught.value.row == 5
    assert "already on line 3" in caught.value.reason


def test_error_reports_the_first_bad_row_in_file_order(csv_with):
    path = csv_with(
        {
            3: "2020-01-03,10.50,11.50,10.00,11.00,-1",  # negative volume
            5: "2020-01-07,11.50,x,11.20,12.00,1100",  # non-numeric, a different rule
        }
    )
    with pytest.raises(DataValidationError) as caught:
        load_csv(path)
    assert (caught.value.row, caught.value.column) == (3, "volume")


def test_a_cell_problem_comes_before_a_bar_problem_on_the_same_row(csv_with):
    path = csv_with({4: "2020-01-06,0,9.00,10.80,abc,900"})  # zero, inverted, non-numeric
    with pytest.raises(DataValidationError) as caught:
        load_csv(path)
    assert located(caught.value) == (4, "close", "non_numeric")


def test_missing_column_is_named(write_csv, good_lines):
    lines = [line.rsplit(",", 1)[0] for line in good_lines]  # drop Volume
    with pytest.raises(DataValidationError) as caught:
        load_csv(write_csv(lines))
    assert located(caught.value) == (1, "volume", "missing_column")
    assert "missing column 'volume'" in caught.value.reason


def test_missing_timestamp_column_is_reported_on_the_header(write_csv):
    with pytest.raises(DataValidationError) as caught:
        load_csv(write_csv(["Open,High,Low,Close,Volume", "1,2,0.5,1.5,10"]))
    assert (caught.value.row, caught.value.kind) == (1, "missing_column")
    assert "timestamp" in caught.value.reason


def test_unknown_column_is_named(write_csv, good_lines):
    lines = [good_lines[0] + ",Foo"] + [row + ",1" for row in good_lines[1:]]
    with pytest.raises(DataValidationError) as caught:
        load_csv(write_csv(lines))
    assert located(caught.value) == (1, "Foo", "unknown_column")
    assert "unknown column 'Foo'" in caught.value.reason


def test_duplicate_column_is_named(write_csv):
    lines = ["Date,Open,High,Low,Close,Close,Volume", "2020-01-02,10,11,9,10,10,5"]
    with pytest.raises(DataValidationError) as caught:
        load_csv(write_csv(lines))
    assert located(caught.value) == (1, "Close", "duplicate_column")


def test_row_with_too_many_fields_is_reported(csv_with):
    path = csv_with({4: "2020-01-06,11.00,12.00,10.80,11.50,900,7"})
    with pytest.raises(DataValidationError) as caught:
        load_csv(path)
    assert located(caught.value) == (4, None, "field_count")
    assert caught.value.reason == "expected 6 fields, found 7"


def test_row_with_too_few_fields_has_an_empty_value(csv_with):
    path = csv_with({3: "2020-01-03,10.50,11.50,10.00,11.00"})
    with pytest.raises(DataValidationError) as caught:
        load_csv(path)
    assert located(caught.value) == (3, "volume", "empty_value")


def test_blank_line_inside_the_file_keeps_line_numbers(write_csv, good_lines):
    lines = [*good_lines[:3], "", *good_lines[3:]]
    lines[5] = "2020-01-06,11.00,12.00,10.80,11.50,-1"  # now file line 6
    with pytest.raises(DataValidationError) as caught:
        load_csv(write_csv(lines))
    assert (caught.value.row, caught.value.column) == (4, "ts")  # the blank line itself
    assert "empty" in caught.value.reason


def test_trailing_blank_lines_are_ignored(write_csv, good_lines):
    assert len(load_csv(write_csv([*good_lines, "", ""]))) == 4


def test_file_without_header_is_rejected(write_csv, good_lines):
    with pytest.raises(DataValidationError) as caught:
        load_csv(write_csv(good_lines[1:]))
    assert (caught.value.row, caught.value.kind) == (1, "no_header")
    assert "no header row" in caught.value.reason


@pytest.mark.parametrize(
    "lines", [[], ["Date,Open,High,Low,Close,Volume"]], ids=["empty", "header"]
)
def test_file_without_data_rows_is_rejected(write_csv, lines):
    with pytest.raises(DataValidationError) as caught:
        load_csv(write_csv(lines))
    assert caught.value.kind == "no_rows"


def test_utc_offsets_are_kept_and_the_frame_is_in_utc_without_an_exchange_zone(write_csv):
    lines = [
        "Datetime,Open,High,Low,Close,Volume",
        "2020-01-02T09:30:00+01:00,10,11,9,10,5",
        "2020-01-02T09:31:00Z,10,11,9,10,5",
    ]
    df = load_csv(write_csv(lines))
    assert list(df.index) == [pd.Timestamp("2020-01-02 08:30", tz="UTC"), pd.Timestamp("2020-01-02 09:31", tz="UTC")]


# -- in-memory frames: rows are 0-based positions --------------------------------------------


def test_validate_bars_accepts_a_valid_frame():
    assert validate_bars(synthetic_bars(50)) is None


def test_frame_error_names_the_zero_based_position():
    df = synthetic_bars(10)
    df.iloc[6, df.columns.get_loc("volume")] = -3.0
    with pytest.raises(DataValidationError) as caught:
        validate_bars(df, source="mine")
    assert located(caught.value) == (6, "volume", "negative_volume")
    assert str(caught.value) == "mine row 6, column 'volume': volume -3.0 is negative"


def test_check_bars_lists_every_issue_in_row_order():
    df = synthetic_bars(10)
    df.iloc[7, df.columns.get_loc("high")] = df.iloc[7]["low"] - 1
    df.iloc[2, df.columns.get_loc("close")] = np.nan
    df.index = df.index[[0, 1, 2, 4, 3, 5, 6, 7, 8, 9]]
    issues = check_bars(df)
    assert [(i.row, i.column, i.kind) for i in issues] == [
        (2, "close", "nan_value"),
        (4, "ts", "out_of_order"),
        (7, "high", "high_below_low"),
    ]
    assert all(not issue.in_file for issue in issues)


def test_frame_with_wrong_columns_or_index_is_reported():
    df = synthetic_bars(3).rename(columns={"volume": "vol"}).reset_index()
    kinds = {(issue.column, issue.kind) for issue in check_bars(df)}
    assert kinds == {
        ("ts", "unknown_column"),
        ("vol", "unknown_column"),
        ("volume", "missing_column"),
        ("ts", "bad_timestamp"),
    }


def test_frame_with_tz_aware_index_is_valid():
    df = synthetic_bars(3).tz_localize("America/New_York")
    assert check_bars(df) == []


def test_frame_with_text_values_is_reported():
    df = synthetic_bars(3)
    df["open"] = df["open"].astype(object)
    df.iloc[1, 0] = "n/a?"
    [issue] = check_bars(df)
    assert (issue.row, issue.column, issue.kind) == (1, "open", "non_numeric")
    assert "'n/a?'" in issue.reason
