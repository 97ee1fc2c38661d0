"""VolatilityMonitor: rolling realized volatility and regime changes with hysteresis."""
from __future__ import annotations

import math

import pytest

from qlcore.data.conditions import RegimeConfig, VolatilityMonitor, VolatilityRegimeChanged
from qlcore.model.market import Bar

S = 1_000_000_000
# bars_per_year=1 makes the annualized vol equal the per-bar RMS of log returns
CFG = RegimeConfig(window=4, bars_per_year=1.0, bounds=(0.01, 0.03),
                   names=("low", "normal", "high"), hysteresis=0.1)


class _Walk:
    """Closes whose log returns alternate +r, -r, so the window's RMS is exactly r."""

    def __init__(self, symbol: str = "X") -> None:
        self.symbol, self.close, self.sign, self.ts = symbol, 100.0, 1, 0

    def bar(self, r: float) -> Bar:
        self.close *= math.exp(self.sign * r)
        self.sign, self.ts = -self.sign, self.ts + S
        c = self.close
        return Bar(self.symbol, self.ts, c, c, c, c, 1.0)


def _feed(monitor: VolatilityMonitor, walk: _Walk, r: float, n: int) -> list[VolatilityRegimeChanged]:
    return [e for e in (monitor.on_bar(walk.bar(r)) for _ in range(n)) if e is not None]


def test_first_full_window_classifies_without_an_old_regime() -> None:
    m, w = VolatilityMonitor(CFG), _Walk()
    m.on_bar(w.bar(0.0))  # first close: no return yet
    assert _feed(m, w, 0.02, 3) == []
    assert m.vol("X") is None
    (event,) = _feed(m, w, 0.02, 1)
    assert (event.symbol, event.old, event.new) == ("X", None, "normal")
    assert event.vol == pytest.approx(0.02)
    assert event.ts == 5 * S
    assert m.regime("X") == "normal"


def test_volatility_hovering_at_a_bound_does_not_flap() -> None:
    m, w = VolatilityMonitor(CFG), _Walk()
    m.on_bar(w.bar(0.0))
    _feed(m, w, 0.02, 4)
    # 0.031 and 0.029 straddle the 0.03 bound but stay inside the 10% band (0.027 .. 0.033)
    assert _feed(m, w, 0.031, 8) + _feed(m, w, 0.029, 8) + _feed(m, w, 0.032, 8) == []
    assert m.regime("X") == "normal"


def test_each_crossing_beyond_the_band_fires_exactly_once() -> None:
    sunk: list[object] = []
    m, w = VolatilityMonitor(CFG, sink=sunk.append), _Walk()
    m.on_bar(w.bar(0.0))
    _feed(m, w, 0.02, 4)
    up = _feed(m, w, 0.034, 10)  # above 0.033
    assert [(e.old, e.new) for e in up] == [("normal", "high")]
    assert up[0].vol > 0.033
    down = _feed(m, w, 0.028, 10)  # below 0.03 but not below 0.027: stays high
    assert down == []
    down = _feed(m, w, 0.026, 10)
    assert [(e.old, e.new) for e in down] == [("high", "normal")]
    calm = _feed(m, w, 0.001, 10)  # straight through normal to low: one event
    assert [(e.old, e.new) for e in calm] == [("normal", "low")]
    assert sunk == m.events
    assert len(m.events) == 4


def test_symbols_are_tracked_separately() -> None:
    m, a, b = VolatilityMonitor(CFG), _Walk("A"), _Walk("B")
    m.on_bar(a.bar(0.0))
    m.on_bar(b.bar(0.0))
    for _ in range(4):
        m.on_bar(a.bar(0.005))
        m.on_bar(b.bar(0.05))
    assert (m.regime("A"), m.regime("B")) == ("low", "high")
    assert m.vol("A") == pytest.approx(0.005)


def test_bad_regime_configs_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="2 bounds need 3 names"):
        RegimeConfig(bounds=(0.1, 0.2), names=("low", "high"))
    with pytest.raises(ValueError, match="strictly increasing"):
        RegimeConfig(bounds=(0.3, 0.2))
    with pytest.raises(ValueError, match=r"unknown regime config keys \['windw'\]"):
        RegimeConfig.from_mapping({"windw": 5})
    assert RegimeConfig.from_mapping({"bounds": [0.2], "names": ["calm", "wild"]}).names == ("calm", "wild")
