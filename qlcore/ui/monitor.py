"""The monitor page: account, equity, strategies, positions, blotter, risk, alerts, jobs, health."""
from __future__ import annotations

import panel as pn

from qlcore.ui.components import (
    Blotter,
    EquityCurve,
    HealthPanel,
    JobsPanel,
    account_summary,
    alerts_panel,
    positions_table,
    risk_panel,
    strategies_table,
)
from qlcore.ui.live import AppContext
from qlcore.ui.page import section, start_page


def create(context: AppContext) -> pn.template.BootstrapTemplate:
    """The monitor for the current session (read-only for every role)."""
    page = start_page(context, "monitor", "Monitor")
    live = page.live
    page.add(
        account_summary(live),
        pn.FlexBox(
            section("Equity", EquityCurve(live=live), min_width=320, styles={"flex": "2 1 480px"}),
            section("Health", HealthPanel(live=live), min_width=300, styles={"flex": "1 1 320px"}),
            sizing_mode="stretch_width",
        ),
        section("P&L by strategy", strategies_table(live)),
        section("Positions", positions_table(live)),
        section("Orders and fills", Blotter(live=live)),
        pn.FlexBox(
            section("Risk limits", risk_panel(live), min_width=300, styles={"flex": "1 1 420px"}),
            section("Alerts", alerts_panel(live), min_width=300, styles={"flex": "1 1 420px"}),
            sizing_mode="stretch_width",
        ),
        section("Jobs and runs", JobsPanel(live=live)),
    )
    return page.template
