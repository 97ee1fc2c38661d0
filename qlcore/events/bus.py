"""The in-process event bus: synchronous, ordered delivery to subscribers by event type."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from qlcore.events.types import Event

Handler = Callable[[Event], object]  # whatever a handler returns is ignored


class EventBus:
    """Publish events to handlers subscribed to their exact type, or to every event."""

    def __init__(self) -> None:
        self._by_type: dict[type, list[Handler]] = defaultdict(list)
        self._all: list[Handler] = []

    def subscribe(self, handler: Handler, event_type: type[Event] | None = None) -> None:
        (self._all if event_type is None else self._by_type[event_type]).append(handler)

    def unsubscribe(self, handler: Handler, event_type: type[Event] | None = None) -> None:
        (self._all if event_type is None else self._by_type[event_type]).remove(handler)

    @property
    def has_subscribers(self) -> bool:
        return bool(self._all) or any(self._by_type.values())

    def publish(self, event: Event) -> None:
        for handler in self._by_type.get(type(event), ()):
            handler(event)
        for handler in self._all:
            handler(event)
