"""Every malformed bar file gets exit code 2 and one line naming the file and the reason, from
`qlcore data check` and from `qlcore backtest --data-file` alike: never a traceback.

The command runs in this process through `qlcore.cli.main`, the entry point of the installed
`qlcore` script, so the exit code and the error line are the user's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from qlcore.cli import main

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
GOOD = "2020-01-02,10,11,9,10.5,10.5,100\n2020-01-03,10,11,9,10.5,10.5,100\n"
MB = 1024 * 1024


def _row(o: str = "10", h: str = "11", lo: str = "9", c: str = "10.5", v: str = "100", d: str = "2020-01-06") -> str:
    return f"{d},{o},{h},{lo},{c},{c},{v}\n"


def _bad(row: str) -> bytes:
    return (HEADER + GOOD + row).encode()


# name -> (content, what the error must say); None content: a directory of that name
BAD_FILES: dict[str, tuple[bytes | None, str]] = {
    "directory": (None, "is a directory, not a bar file"),
    "empty": (b"", "file is empty"),
    "blank-lines": (b"\n\n\n", "file is empty"),
    "header-only": (HEADER.encode(), "no data rows after the header"),
    "header-then-blank-lines": ((HEADER + "\n\n").encode(), "no data rows after the header"),
    "latin1-cell": ((HEADER + GOOD).encode() + "2020-01-06,10,11,9,10.5,10.5,100 \xe9\n".encode("latin-1"),
                    "line 4: not UTF-8 text: byte 0xe9"),
    "cp1252-header": ("Dät€,Open,High,Low,Close,Volume\n".encode("cp1252") + GOOD.encode(),
                      "line 1: not UTF-8 text: byte 0xe4"),
    "utf16": ((HEADER + GOOD).encode("utf-16"), "UTF-16 text (byte-order mark FF FE); save the file as UTF-8"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "not UTF-8 text: byte 0x89"),
    "ten-mb-row": ((HEADER + GOOD).encode() + b"2020-01-06," + b"1" * (10 * MB) + b",11,9,10,10,100\n",
                   "line 4: line is 10,485,786 bytes long (limit 1,048,576)"),
    "ten-mb-header": (b"Date" + b"x" * (10 * MB) + b"\n" + GOOD.encode(), "line 1: line is 10,485,764 bytes long"),
    "price-1e308": (_bad(_row(o="1e308", h="1e308", lo="1e308", c="1e308")),
                    "line 4, column 'open': open 1e308 is above the largest price accepted, 1,000,000,000,000"),
    "volume-1e300": (_bad(_row(v="1e300")), "column 'volume': volume 1e300 is above the largest volume accepted"),
    "price-inf": (_bad(_row(h="inf", c="inf")), "line 4, column 'high': value 'inf' is not finite"),
    "price-minus-inf": (_bad(_row(lo="-inf")), "column 'low': value '-inf' is not finite"),
    "price-nan": (_bad(_row(c="nan")), "line 4, column 'close': NaN value 'nan'"),
    "volume-NaN": (_bad(_row(v="NaN")), "column 'volume': NaN value 'NaN'"),
    "volume-1e400": (_bad(_row(v="1e400")), "column 'volume': value '1e400' is not finite"),
    "negative-price": (_bad(_row(o="-10", lo="-11")), "open -10 is negative; prices must be positive"),
    "zero-price": (_bad(_row(o="0", lo="0")), "open 0 is zero; prices must be positive"),
    "negative-volume": (_bad(_row(v="-5")), "volume -5 is negative"),
    "semicolons": ((HEADER + GOOD).replace(",", ";").encode(), "fields are separated by ';', not commas"),
    "tabs": ((HEADER + GOOD).replace(",", "\t").encode(), "fields are separated by tabs, not commas"),
    "no-header": (GOOD.encode(), "no header row: line 1 starts with '2020-01-02'"),
    "missing-close": (b"Date,Open,High,Low,Volume\n2020-01-02,10,11,9,100\n", "missing column 'close'"),
    "duplicate-column": (b"Date,Open,Open,High,Low,Close,Volume\n2020-01-02,10,10,11,9,10,100\n",
                         "duplicate column 'Open'"),
    "text-price": (_bad(_row(c="abc")), "line 4, column 'close': non-numeric value 'abc'"),
    "nul-byte": (_bad("2020-01-06,10,11\x00,9,10.5,10.5,100\n"), "line 4, column 'high': non-numeric value"),
    "too-few-fields": (_bad("2020-01-06,10,11\n"), "line 4, column 'low': empty value"),
    "too-many-fields": (_bad("2020-01-06,10,11,9,10,10,100,7,8\n"), "line 4: expected 7 fields, found 9"),
    "unterminated-quote": (_bad('2020-01-06,"10,11,9,10,10,100\n'), "malformed CSV: EOF inside string"),
    "bad-date": (_bad(_row(d="2020-13-45")), "line 4, column 'ts': unparseable timestamp '2020-13-45'"),
    "duplicate-rows": ((HEADER + GOOD + GOOD).encode(), "line 4, column 'ts': duplicate row"),
    "high-below-low": (_bad(_row(h="8", lo="9", o="8.5", c="8.5")), "high 8 is below low 9"),
    "long-cell-is-shortened": (_bad(_row(c="x" * 5000)), "non-numeric value 'xxxxxxxx"),
    "csv-as-parquet": ((HEADER + GOOD).encode(), "not a readable Parquet file"),
}


def _write(folder: Path, name: str, content: bytes | None) -> Path:
    path = folder / (f"{name}.parquet" if name == "csv-as-parquet" else f"{name}.csv")
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["qlcore", *args])
    with pytest.raises(SystemExit) as ended:
        main()
    out, err = capsys.readouterr()
    return int(ended.value.code or 0), out, err


@pytest.mark.parametrize("name", list(BAD_FILES))
@pytest.mark.parametrize("command", ["data check", "backtest"])
def test_a_malformed_file_exits_2_naming_the_file_and_the_reason(command, name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QLCORE_DATA_DIR", str(tmp_path / "store"))
    content, reason = BAD_FILES[name]
    path = _write(tmp_path, name, content)
    args = ["data", "check", str(path)] if command == "data check" else [
        "backtest", "-s", "sma_cross", "--data-file", str(path)]
    code, out, err = _run(monkeypatch, capsys, *args)
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 2, err
    assert str(path.resolve()) in line and reason in line, line
    assert "Traceback" not in out + err
    assert len(line) < 400  # a 10 MB row is named, not printed
    assert not (tmp_path / "store" / "qlcore.db").exists() or command == "data check"  # no run was stored


def test_a_clean_file_still_passes_data_check(tmp_path, monkeypatch, capsys):
    path = tmp_path / "good.csv"
    path.write_text(HEADER + GOOD)
    code, out, err = _run(monkeypatch, capsys, "data", "check", str(path))
    assert (code, err) == (0, "") and "issues: none" in out


def test_a_file_that_is_not_csv_or_parquet_is_named(tmp_path, monkeypatch, capsys):
    path = tmp_path / "bars.txt"
    path.write_text(HEADER + GOOD)
    code, _, err = _run(monkeypatch, capsys, "data", "check", str(path))
    assert code == 2 and "expected a .csv or .parquet file" in err and "Traceback" not in err
