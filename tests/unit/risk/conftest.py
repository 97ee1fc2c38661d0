"""The `desk` fixture; the desk itself and its helpers are in `risk_desk`."""
from __future__ import annotations

import pytest
from risk_desk import Desk


@pytest.fixture
def desk():
    """`desk(config, cash=..., prices={...})` builds a `Desk`."""
    return Desk
