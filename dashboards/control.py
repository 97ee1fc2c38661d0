"""The control dashboard. `qlcore serve` serves it behind a login; `panel serve dashboards/control.py` serves it
alone, read-only (no login, so no role): see docs/dashboards.md."""
from qlcore.ui.control import create
from qlcore.ui.server import default_context

create(default_context()).servable()
