"""Opt-in repairs: each fixes exactly its defect, is counted, and leaves the rest an error."""

from __future__ import annotations

import pandas as pd
import pytest

from qlcore.data import REPAIRS, DataValidationError, inspect_file, load_csv

SWAPPED = {
    3: "2020-01-06,11.00,12.00,10.80,11.50,900",
    4: "2020-01-03,10.50,11.50,10.00,11.00,1200",
}
DUPLICATE = {4: "2020-01-03,10.50,11.50,10.00,11.00,1200"}  # exact copy of line 3


def located(err: DataValidationError) -> tuple[int | None, str | None, str]:
    return err.row, err.column, err.kind


def test_sort_puts_out_of_order_rows_in_time_order(csv_with):
    path = csv_with(SWAPPED)
    with pytest.raises(DataValidationError):
        load_csv(path)
    df = load_csv(path, repair={"sort"})
    assert list(df.index.strftime("%Y-%m-%d")) == [
        "2020-01-02",
        "2020-01-03",
        "2020-01-06",
        "2020-01-07",
    ]
    assert df.loc["2020-01-03", "close"] == 11.0
    assert inspect_file(path, repair="sort").repairs == {"sort": 1}


def test_a_single_name_string_is_one_repair_not_letters(csv_with):
    assert len(load_csv(csv_with(SWAPPED), repair="sort")) == 4


def test_dedupe_drops_exact_duplicate_rows(csv_with):
    path = csv_with(DUPLICATE)
    df = load_csv(path, repair=["dedupe"])
    assert len(df) == 3
    assert list(df.index) == [pd.Timestamp(d) for d in ("2020-01-02", "2020-01-03", "2020-01-07")]
    assert inspect_file(path, repair="dedupe").repairs == {"dedupe": 1}


def test_dedupe_leaves_same_time_with_different_values_an_error(csv_with):
    path = csv_with({4: "2020-01-03,10.50,11.50,10.00,11.05,1200"})
    with pytest.raises(DataValidationError) as caught:
        load_csv(path, repair={"dedupe"})
    assert (caught.value.row, caught.value.kind) == (4, "duplicate_timestamp")


def test_dedupe_and_sort_together_fix_a_shuffled_copy(csv_with):
    path = csv_with({5: "2020-01-03,10.50,11.50,10.00,11.00,1200"})  # line 3 again, after 01-06
    df = load_csv(path, repair={"sort", "dedupe"})
    assert list(df.index.day) == [2, 3, 6]


def test_merge_combines_rows_sharing_a_timestamp_into_one_bar(csv_with):
    path = csv_with({4: "2020-01-03,10.80,11.90,10.60,10.70,300"})
    df = load_csv(path, repair={"merge"})
    assert len(df) == 3
    bar = df.loc["2020-01-03"]
    # first open, highest high, lowest low, last close, summed volume
    assert bar.to_dict() == {
        "open": 10.5,
        "high": 11.9,
        "low": 10.0,
        "close": 10.7,
        "volume": 1500.0,
    }
    assert inspect_file(path, repair="merge").repairs == {"merge": 1}


def test_clip_widens_the_range_to_include_open_and_close(csv_with):
    path = csv_with(
        {
            3: "2020-01-03,11.70,11.50,10.00,11.00,1200",  # open above high
            5: "2020-01-07,11.50,12.50,11.20,11.10,1100",  # close below low
        }
    )
    df = load_csv(path, repair={"clip"})
    assert df.loc["2020-01-03"].to_dict() == {
        "open": 11.7,
        "high": 11.7,
        "low": 10.0,
        "close": 11.0,
        "volume": 1200.0,
    }
    assert (df.loc["2020-01-07", "low"], df.loc["2020-01-07", "close"]) == (11.1, 11.1)
    assert inspect_file(path, repair="clip").repairs == {"clip": 2}


def test_clip_does_not_repair_high_below_low(csv_with):
    path = csv_with({3: "2020-01-03,10.50,9.00,10.00,9.50,1200"})
    with pytest.raises(DataValidationError) as caught:
        load_csv(path, repair={"clip"})
    assert (caught.value.row, caught.value.kind) == (3, "high_below_low")


def test_repair_true_applies_every_repair(csv_with, write_csv, good_lines):
    lines = [
        good_lines[0],
        good_lines[3],  # 01-06, out of order
        good_lines[1],
        good_lines[2],
        good_lines[2],  # exact duplicate of 01-03
        "2020-01-07,13.00,12.50,11.20,12.00,1100",  # open above high
        "2020-01-07,12.00,12.90,11.90,12.10,50",  # same time, other values
    ]
    path = write_csv(lines)
    df = load_csv(path, repair=True)
    assert list(df.index.day) == [2, 3, 6, 7]
    assert df.loc["2020-01-07"].to_dict() == {
        "open": 13.0,
        "high": 13.0,
        "low": 11.2,
        "close": 12.1,
        "volume": 1150.0,
    }
    # sort counts the rows earlier than a row above them: 01-02 and both 01-03 lines
    assert inspect_file(path, repair=True).repairs == {
        "sort": 3,
        "dedupe": 1,
        "clip": 1,
        "merge": 1,
    }


def test_repairs_do_not_hide_unrepairable_rows(csv_with):
    path = csv_with({**SWAPPED, 5: "2020-01-07,11.50,12.50,11.20,oops,1100"})
    with pytest.raises(DataValidationError) as caught:
        load_csv(path, repair=True)
    assert located(caught.value) == (5, "close", "non_numeric")


def test_unknown_repair_name_lists_the_valid_ones(csv_with):
    with pytest.raises(ValueError) as caught:
        load_csv(csv_with({}), repair={"sort", "interpolate"})
    message = str(caught.value)
    assert "'interpolate'" in message
    assert all(name in message for name in REPAIRS)
    assert not isinstance(caught.value, DataValidationError)
