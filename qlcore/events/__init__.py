"""Events: frozen types, the in-process bus, the append-only store and replay."""

from qlcore.events.bus import EventBus
from qlcore.events.codec import EventDecodeError, decode, encode
from qlcore.events.store import CorruptEventLog, EventStore, StoreConflict, StreamWriter
from qlcore.events.types import *  # noqa: F403
from qlcore.events.types import EVENT_TYPES, Event

__all__ = [
    "EVENT_TYPES",
    "CorruptEventLog",
    "Event",
    "EventBus",
    "EventDecodeError",
    "EventStore",
    "StoreConflict",
    "StreamWriter",
    "decode",
    "encode",
    *EVENT_TYPES,
]
