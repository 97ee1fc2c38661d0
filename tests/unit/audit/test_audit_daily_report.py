"""The daily report over a real backtest stored in SQLite: blotter, order counts, denials, day P&L, files."""
from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from qlcore.audit.report_cli import report_app
from qlcore.audit.reports import BLOTTER_COLUMNS, daily_report
from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.events import EventStore
from qlcore.risk import RiskEngine
from qlcore.strategies import Strategy

D = Decimal


class Scripted(Strategy):
    """Orders by bar number (+buy / -sell); each fills at the next bar's close."""

    name = "scripted"
    # bar 3 is over max_order_quantity and bar 5 would go short: both denied
    plan = {0: 8, 2: -3, 3: 50, 4: 4, 5: -10, 6: -9}

    def on_bar(self, bar) -> None:
        i = getattr(self, "i", -1) + 1
        self.i = i
        qty = self.plan.get(i)
        if qty is not None:
            self.buy(qty) if qty > 0 else self.sell(-qty)


def bars() -> pd.DataFrame:
    """Every 6 hours from 2024-03-04 14:00 UTC to 2024-03-06 08:00: two bars on the 4th, four on the 5th."""
    closes = [1000.0, 1010.0, 1040.0, 1030.0, 1020.0, 1050.0, 990.0, 1000.0]
    idx = pd.date_range("2024-03-04 14:00", periods=len(closes), freq="6h", name="ts")
    df = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes, "volume": 1e3}, index=idx)
    df.attrs["symbol"] = "ACME"
    return df


def cli() -> typer.Typer:
    """`qlcore report` as registered in qlcore/cli.py."""
    app = typer.Typer()
    app.add_typer(report_app, name="report")
    return app


def run_into(store: EventStore, strategy_id: str = "s1"):
    risk = RiskEngine({"account": {"max_order_quantity": 10, "allow_short": False}})
    engine = BacktestEngine(BacktestConfig(fee_bps=10), store=store, risk=risk)
    engine.add_strategy(Scripted(strategy_id=strategy_id))
    return engine.run(bars())


@pytest.fixture
def stored(sqlite_url):
    store = EventStore(sqlite_url)
    return sqlite_url, store, run_into(store)


def test_blotter_rows_are_the_runs_fills_of_that_day(stored):
    _, store, result = stored
    report = daily_report(store, "2024-03-05")
    assert list(report.blotter.columns) == BLOTTER_COLUMNS
    fills = result.fills[result.fills["ts"].dt.date == date(2024, 3, 5)]
    assert len(fills) == 2
    assert list(report.blotter["order_id"]) == list(fills["order_id"]) == ["O-2", "O-4"]
    assert list(report.blotter["quantity"]) == list(fills["quantity"])
    assert list(report.blotter["price"]) == list(fills["price"])
    assert list(report.blotter["fee"]) == list(fills["fee"])
    assert list(report.blotter["time"]) == [pd.Timestamp(t, tz="UTC") for t in fills["ts"]]
    first = report.blotter.iloc[0].to_dict()
    assert first["stream"] == result.run_id and first["strategy"] == "s1" and first["symbol"] == "ACME"
    assert first["side"] == "SELL"
    assert (first["quantity"], first["price"], first["notional"], first["fee"]) == (
        D(3), D("1030.0"), D("3090.0"), D("3.0900")
    )
    assert all(type(v) is Decimal for v in report.blotter["notional"])


def test_orders_denials_and_risk_of_the_day(stored):
    _, store, _ = stored
    report = daily_report(store, date(2024, 3, 5))
    assert report.orders == {"initialized": 4, "filled": 2, "denied": 2, "canceled": 0}
    denials = report.denials.set_index("rule")
    assert denials["denials"].to_dict() == {"max_order_quantity": 1, "short_sale": 1}
    assert denials.loc["max_order_quantity", "example"].startswith("max_order_quantity: limit 10, order 50")
    (row,) = report.positions.to_dict("records")
    assert row == {
        "strategy": "s1", "symbol": "ACME", "bought": D(4), "sold": D(3), "net": D(1),
        "notional": D(7290), "fees": D("7.29"), "realized_pnl": D(60),  # 3 x (1030 - 1010)
    }
    assert report.summary() == (
        "2024-03-05: 2 fills, orders 4 initialized / 2 filled / 2 denied / 0 canceled, "
        "notional 7,290.00, fees 7.29, realized P&L 60.00"
    )


def test_realized_pnl_of_the_day_excludes_earlier_days(stored):
    _, store, result = stored
    report = daily_report(store, "2024-03-06")
    (row,) = report.positions.to_dict("records")
    # sell 9 at 1000 against 5 @ 1010 + 4 @ 1050: -250; the 60 realized on the 5th is not this day's
    assert row["realized_pnl"] == D(-250)
    assert result.fills["price"].iloc[-1] == D("1000.0")
    assert report.orders == {"initialized": 1, "filled": 1, "denied": 0, "canceled": 0}
    assert report.denials.empty


def test_streams_default_to_all_and_can_be_chosen(stored):
    _, store, first = stored
    second = run_into(store, strategy_id="s2")
    both = daily_report(store, "2024-03-05")
    assert set(both.blotter["stream"]) == {first.run_id, second.run_id} and len(both.blotter) == 4
    assert list(both.positions["strategy"]) == ["s1", "s2"]
    assert both.denials.set_index("rule")["denials"].to_dict() == {"max_order_quantity": 2, "short_sale": 2}
    only = daily_report(store, "2024-03-05", streams=[second.run_id])
    assert set(only.blotter["stream"]) == {second.run_id} and only.orders["initialized"] == 4


def test_written_files_hold_the_figures(stored, tmp_path):
    _, store, _ = stored
    report = daily_report(store, "2024-03-05")
    paths = report.write(tmp_path / "reports")
    assert {k: p.name for k, p in paths.items()} == {
        "blotter": "blotter-2024-03-05.csv", "risk": "risk-2024-03-05.csv", "html": "report-2024-03-05.html",
    }
    with paths["blotter"].open() as f:
        blotter = list(csv.DictReader(f))
    assert [(r["order_id"], r["side"], r["quantity"], r["price"], r["notional"], r["fee"]) for r in blotter] == [
        ("O-2", "SELL", "3", "1030.0", "3090.0", "3.0900"),
        ("O-4", "BUY", "4", "1050.0", "4200.0", "4.2000"),
    ]
    assert blotter[0]["time"] == "2024-03-05T08:00:00+00:00"
    with paths["risk"].open() as f:
        risk = list(csv.DictReader(f))
    position = next(r for r in risk if r["kind"] == "position")
    assert (position["notional"], position["fees"], position["realized_pnl"]) == ("7290.0", "7.2900", "60.0")
    assert {r["rule"]: r["denials"] for r in risk if r["kind"] == "denial"} == {"max_order_quantity": "1", "short_sale": "1"}
    page = paths["html"].read_text()
    assert "<title>Daily report 2024-03-05</title>" in page
    assert "7,290.00" in page and "4,200.00" in page
    assert '<span style="color:#1a7f37">60.00</span>' in page  # a gain, in green
    assert "short_sale: limit position &gt;= 0" in page
    assert "7,290.00" in report._repr_html_()


def test_a_loss_is_red_in_the_html(stored):
    _, store, _ = stored
    assert '<span style="color:#cf222e">-250.00</span>' in daily_report(store, "2024-03-06")._repr_html_()


def test_a_day_without_activity_gives_an_empty_report(stored, tmp_path):
    _, store, _ = stored
    report = daily_report(store, "2024-03-09")
    assert report.is_empty and report.blotter.empty and report.positions.empty and report.denials.empty
    assert report.orders == {"initialized": 0, "filled": 0, "denied": 0, "canceled": 0}
    assert report.realized_pnl == 0 and report.summary() == "2024-03-09: no activity in 1 stream"
    paths = report.write(tmp_path)
    assert paths["blotter"].read_text().strip() == ",".join(BLOTTER_COLUMNS)
    assert "No activity on 2024-03-09" in paths["html"].read_text()


@pytest.mark.parametrize("bad", ["2024-02-30", "05/03/2024", "yesterday", ""])
def test_an_invalid_date_is_named_in_the_error(stored, bad):
    _, store, _ = stored
    with pytest.raises(ValueError, match=f"invalid date {bad!r}"):
        daily_report(store, bad)


def test_cli_writes_the_files_and_prints_a_summary(stored, tmp_path):
    url, _, result = stored
    out = tmp_path / "out"
    run = CliRunner().invoke(cli(), ["report", "daily", "--date", "2024-03-05", "--out", str(out), "--db", url])
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    assert lines[:3] == [str(out / n) for n in ("blotter-2024-03-05.csv", "risk-2024-03-05.csv", "report-2024-03-05.html")]
    assert lines[3].startswith("2024-03-05: 2 fills,") and lines[3].endswith("realized P&L 60.00")
    from qlcore.audit.log import AuditLog

    log = AuditLog(url)  # the report pins the audit head, and the anchor it prints is the one on file
    anchored = log.anchors.read()[-1]
    assert lines[4] == f"audit anchor: seq {anchored.seq} hash {anchored.hash} at {anchored.when}"
    assert log.verify().ok
    one = CliRunner().invoke(
        cli(), ["report", "daily", "--date", "2024-03-05", "--stream", result.run_id, "--out", str(out), "--db", url]
    )
    assert one.exit_code == 0 and "2 fills" in one.output


def test_cli_refuses_a_bad_date_and_an_unknown_stream(stored, tmp_path):
    url, _, _ = stored
    out = tmp_path / "out"
    bad = CliRunner().invoke(cli(), ["report", "daily", "--date", "2024-13-01", "--out", str(out), "--db", url])
    assert bad.exit_code == 2 and "invalid date '2024-13-01'" in bad.output
    unknown = CliRunner().invoke(
        cli(), ["report", "daily", "--date", "2024-03-05", "--stream", "nope", "--out", str(out), "--db", url]
    )
    assert unknown.exit_code == 2 and "no such stream(s) nope" in unknown.output
    assert not out.exists()  # nothing written
