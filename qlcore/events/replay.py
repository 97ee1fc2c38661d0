"""Replay: rebuild trading state from a stored stream, all or nothing."""
from __future__ import annotations

from dataclasses import dataclass

from qlcore.engine.gcpause import gc_paused
from qlcore.events.facts import EngineStateRecorded
from qlcore.events.store import CorruptEventLog, EventStore
from qlcore.events.types import Event, RunFinished
from qlcore.model.state import TradingState


@dataclass(frozen=True, slots=True)
class ReplayResult:
    stream: str
    state: TradingState
    events: int
    last_seq: int
    recorded_hash: str | None  # the hash the live run (RunFinished) or engine (EngineStateRecorded) wrote last

    @property
    def state_hash(self) -> str:
        return self.state.state_hash()

    @property
    def verified(self) -> bool:
        return self.recorded_hash is not None and self.recorded_hash == self.state_hash


def replay(store: EventStore, stream: str) -> ReplayResult:
    """Fold every event of `stream` into a fresh state. A bad log raises `CorruptEventLog` and no state escapes."""
    state = TradingState()
    apply = state.apply
    last = 0
    event: Event | None = None
    with gc_paused():
        for seqs, events in store.iter_batches(stream):
            try:
                for event in events:
                    apply(event)
            except Exception as exc:
                # found by identity: two equal events can sit in one batch
                seq = next(s for s, e in zip(seqs, events, strict=True) if e is event)
                raise CorruptEventLog(stream, seq, f"cannot apply {type(event).__name__}: {exc}") from None
            last = seqs[-1]
    if last == 0:
        raise LookupError(f"no events stored for {stream!r}")
    # a finished run's last event carries the live state hash, and so does a cleanly stopped engine's
    # (neither event changes anything); an engine that is running or crashed has none at the end
    recorded = event.state_hash if isinstance(event, (RunFinished, EngineStateRecorded)) else None
    return ReplayResult(stream, state, last, last, recorded)
