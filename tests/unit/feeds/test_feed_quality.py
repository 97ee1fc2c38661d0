"""IngestionGate: faults injected into the synthetic feed are quarantined and never delivered."""
from __future__ import annotations

import math

import pytest

from qlcore.data.feed import Fault, FaultKind, ManualClock, SymbolSeed, SyntheticIntradayFeed
from qlcore.data.quality import (
    DataGap,
    DataQuarantined,
    FeedResumed,
    FeedStale,
    IngestionGate,
    PriceLevelReset,
    QualityConfig,
    QuarantineKind,
)
from qlcore.events.types import Event
from qlcore.model.market import Bar

S = 1_000_000_000
T0 = 1_600_000_000 * S
SEEDS = (SymbolSeed("AAA", 100.0, 0.02), SymbolSeed("BBB", 25.0, 0.03))


def _feed(faults: tuple[Fault, ...] = (), **kw: object) -> SyntheticIntradayFeed:
    args: dict[str, object] = dict(start_ts=T0, n_bars=300, seed=11, clock=ManualClock(T0))
    args.update(kw)
    return SyntheticIntradayFeed(SEEDS, faults=faults, **args)  # type: ignore[arg-type]


def _run(feed: SyntheticIntradayFeed, **cfg: object) -> tuple[list[Bar], list[Event]]:
    sunk: list[Event] = []
    gate = IngestionGate(QualityConfig(**cfg), feed.clock, sink=sunk.append)  # type: ignore[arg-type]
    delivered = list(gate.run(feed))
    assert sunk == gate.events
    return delivered, gate.events


def _clean(feed: SyntheticIntradayFeed) -> list[Bar]:
    return [bar for step in feed.clean_bars() for bar in step]


def test_clean_synthetic_bars_all_pass_unchanged_and_in_order() -> None:
    feed = _feed()
    delivered, events = _run(feed)
    assert events == []
    assert delivered == _clean(_feed())
    assert len(delivered) == 600


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault(FaultKind.SPIKE, step=120, symbol="AAA", size=0.05), QuarantineKind.SPIKE),
        (Fault(FaultKind.SPIKE, step=150, symbol="BBB", size=-0.04), QuarantineKind.SPIKE),
        (Fault(FaultKind.OHLC, step=80, symbol="BBB"), QuarantineKind.OHLC),
        (Fault(FaultKind.DUPLICATE, step=60, symbol="AAA"), QuarantineKind.DUPLICATE),
        (Fault(FaultKind.OUT_OF_ORDER, step=90, symbol="AAA", length=3), QuarantineKind.OUT_OF_ORDER),
    ],
)
def test_each_fault_is_quarantined_with_its_kind_and_never_delivered(
    fault: Fault, kind: QuarantineKind
) -> None:
    feed = _feed((fault,))
    sent = list(_feed((fault,)))
    delivered, events = _run(feed)

    assert len(events) == 1
    event = events[0]
    assert isinstance(event, DataQuarantined)
    assert (event.kind, event.symbol) == (kind, fault.symbol)
    assert event.reason.startswith(f"{kind.value}: ")
    assert event.bar in sent
    step_ts = T0 + fault.step * S
    if kind is QuarantineKind.OUT_OF_ORDER:
        assert event.bar.ts == step_ts - fault.length * S
    else:
        assert event.bar.ts == step_ts
    # the consumer sees exactly the clean path, minus the corrupted bar where one replaced it
    expected = _clean(feed)
    if kind in (QuarantineKind.SPIKE, QuarantineKind.OHLC):
        expected = [b for b in expected if (b.symbol, b.ts) != (fault.symbol, step_ts)]
        assert all(b != event.bar for b in delivered)
    assert delivered == expected


def test_all_faults_together_leave_the_clean_bars_in_order() -> None:
    faults = (
        Fault(FaultKind.SPIKE, step=100, symbol="AAA"),
        Fault(FaultKind.OHLC, step=110, symbol="AAA"),
        Fault(FaultKind.DUPLICATE, step=120, symbol="BBB"),
        Fault(FaultKind.OUT_OF_ORDER, step=130, symbol="BBB", length=2),
        Fault(FaultKind.GAP, step=140, symbol="AAA", length=3),
    )
    delivered, events = _run(_feed(faults))
    kinds = [(type(e).__name__, getattr(e, "kind", None), e.symbol) for e in events]  # type: ignore[attr-defined]
    assert kinds == [
        ("DataQuarantined", QuarantineKind.SPIKE, "AAA"),
        ("DataQuarantined", QuarantineKind.OHLC, "AAA"),
        ("DataQuarantined", QuarantineKind.DUPLICATE, "BBB"),
        ("DataQuarantined", QuarantineKind.OUT_OF_ORDER, "BBB"),
        ("DataGap", None, "AAA"),
    ]
    lost = {("AAA", T0 + k * S) for k in (100, 110, 140, 141, 142)}
    assert delivered == [b for b in _clean(_feed()) if (b.symbol, b.ts) not in lost]


def test_a_gap_is_reported_with_the_missing_count_and_the_next_bar_passes() -> None:
    feed = _feed((Fault(FaultKind.GAP, step=50, symbol="BBB", length=4),))
    delivered, events = _run(feed)
    assert events == [DataGap(T0, "BBB", T0 + 49 * S, T0 + 54 * S, 4)]
    assert ("BBB", T0 + 54 * S) in {(b.symbol, b.ts) for b in delivered}


def test_stall_makes_the_feed_stale_then_resumed_on_the_injected_clock() -> None:
    clock = ManualClock(T0)
    feed = _feed((Fault(FaultKind.STALL, step=40, seconds=12.0),), step_seconds=1.0, clock=clock,
                 n_bars=60)
    delivered, events = _run(feed, stale_after_seconds=5.0)
    assert len(delivered) == 120
    # the bar of step 39 arrived at 39 s, step 40 at 40 + 12 s: silent 13 s, over the 5 s limit
    assert events == [
        FeedStale(T0 + 52 * S, "AAA", T0 + 39 * S, 5 * S),
        FeedStale(T0 + 52 * S, "BBB", T0 + 39 * S, 5 * S),
        FeedResumed(T0 + 52 * S, "AAA", 13 * S),
        FeedResumed(T0 + 52 * S, "BBB", 13 * S),
    ]


def test_polling_a_silent_feed_reports_stale_once_then_resumed() -> None:
    clock = ManualClock(T0)
    feed = _feed(step_seconds=1.0, clock=clock, n_bars=3)
    gate = IngestionGate(QualityConfig(stale_after_seconds=5.0), clock, symbols=("AAA", "BBB", "CCC"))
    feed.start()
    assert len(gate.poll(feed)) == 2
    clock.advance(5.0)
    assert len(gate.poll(feed)) == 4  # steps 1 and 2 were due; CCC has been silent exactly 5 s
    assert gate.events == []
    clock.advance(0.001)
    gate.poll(feed)
    assert gate.events == [FeedStale(clock.now, "CCC", T0, 5 * S)]
    clock.advance(10)
    gate.poll(feed)  # the feed is exhausted: AAA and BBB go stale, CCC is reported only once
    assert [(type(e).__name__, e.symbol) for e in gate.events[1:]] == [  # type: ignore[attr-defined]
        ("FeedStale", "AAA"), ("FeedStale", "BBB")]
    gate.ingest(Bar("CCC", T0, 5.0, 5.0, 5.0, 5.0, 1.0))
    assert gate.events[-1] == FeedResumed(clock.now, "CCC", clock.now - T0)


# --- spike threshold, with returns of exactly +-a so the window's RMS is a ------------------------
A = math.log(100.1 / 100.0)


def _warm_gate(limit: float = 6.0) -> tuple[IngestionGate, int]:
    gate = IngestionGate(QualityConfig(spike_sigmas=limit, spike_min_returns=20, spike_window=20),
                         ManualClock())
    ts = T0
    for i in range(21):  # 20 returns alternating +A, -A; ends at 100.0
        c = 100.0 if i % 2 == 0 else 100.1
        assert gate.ingest(Bar("X", ts, c, c, c, c, 1.0)) is not None
        ts += S
    return gate, ts


def test_a_move_exactly_at_the_spike_limit_passes() -> None:
    gate, ts = _warm_gate()
    close = 100.0 * math.exp(6 * A)
    assert gate.ingest(Bar("X", ts, 100.0, close, 100.0, close, 1.0)) is not None
    assert gate.events == []


def test_the_last_tick_under_the_spike_limit_passes() -> None:
    gate, ts = _warm_gate()
    assert gate.ingest(Bar("X", ts, 100.0, 100.60, 100.0, 100.60, 1.0)) is not None
    assert gate.events == []


def test_one_tick_over_the_spike_limit_is_quarantined_with_sigma_and_limit_in_the_reason() -> None:
    gate, ts = _warm_gate()
    close = 100.61  # the limit is 100.0 * exp(6 * A) = 100.6015; the tick under it, 100.60, passes
    bar = Bar("X", ts, 100.0, close, 100.0, close, 1.0)
    assert gate.ingest(bar) is None
    (event,) = gate.events
    assert isinstance(event, DataQuarantined)
    z = math.log(close / 100.0) / A
    assert 6.0 < z < 6.1
    assert event.reason == f"spike: close 100.61 is {z:.1f} sigma from 100.00 (limit 6)"
    assert event.bar == bar


def test_downward_spikes_count_and_the_next_good_bar_is_measured_from_the_last_good_close() -> None:
    gate, ts = _warm_gate()
    assert gate.ingest(Bar("X", ts, 100.0, 100.0, 90.0, 90.0, 1.0)) is None
    assert gate.ingest(Bar("X", ts + S, 100.0, 100.1, 100.0, 100.1, 1.0)) is not None


def test_a_lasting_new_level_is_accepted_after_the_configured_number_of_spikes() -> None:
    gate = IngestionGate(QualityConfig(spike_min_returns=20, spike_window=20, spike_accept_after=3),
                         ManualClock())
    ts = T0
    for i in range(21):
        c = 100.0 if i % 2 == 0 else 100.1
        gate.ingest(Bar("X", ts, c, c, c, c, 1.0))
        ts += S
    results = []
    for _ in range(5):
        results.append(gate.ingest(Bar("X", ts, 80.0, 80.0, 80.0, 80.0, 1.0)) is not None)
        ts += S
    assert results == [False, False, False, True, True]
    assert gate.events[-1] == PriceLevelReset(0, "X", 100.0, 80.0, 3)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (dict(high=99.0), "ohlc: high 99.00 is below max(open, close) 100.50"),
        (dict(low=100.2), "ohlc: low 100.20 is above min(open, close) 100.00"),
        (dict(close=float("nan")), "ohlc: close nan is not a positive number"),
        (dict(open=0.0), "ohlc: open 0.0 is not a positive number"),
        (dict(volume=-1.0), "ohlc: volume -1.0 is not a non-negative number"),
    ],
)
def test_ohlc_violations_are_quarantined_naming_the_field(fields: dict, reason: str) -> None:
    gate = IngestionGate(QualityConfig(), ManualClock())
    bar = Bar("X", T0, 100.0, 101.0, 99.5, 100.5, 10.0)._replace(**fields)
    assert gate.ingest(bar) is None
    assert gate.events == [DataQuarantined.of(0, QuarantineKind.OHLC, reason, bar)]


def test_unknown_config_keys_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown quality config keys \['spike_sigma'\]"):
        QualityConfig.from_mapping({"spike_sigma": 4})
    assert QualityConfig.from_mapping({"spike_sigmas": 4}).spike_sigmas == 4
