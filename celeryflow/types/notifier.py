"""Event notification (TaskFlow's ``Notifier``).

Callbacks are ``callback(event_type, details)``. An engine's notifiers fire in
the process that called ``run()`` / ``wait()``, even when atoms run on remote
workers: events are read back from the logbook and replayed there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

LOG = logging.getLogger(__name__)

Callback = Callable[[str, dict[str, Any]], Any]


class Notifier:
    """A registry of callbacks per event type; ``ANY`` receives every event."""

    ANY = "*"
    RESERVED_KEYS = ("details",)

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._topics: dict[str, list[tuple[Callback, dict[str, Any] | None]]] = {}

    def register(
        self,
        event_type: str,
        callback: Callback,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        details_filter: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Call ``callback(event_type, details)`` for each ``event_type`` event (``ANY`` for all)."""
        if not callable(callback):
            raise ValueError("Notifier callbacks must be callable")
        extra = {"args": args, "kwargs": kwargs or {}, "filter": details_filter}
        with self._lock:
            if self.is_registered(event_type, callback, details_filter=details_filter):
                raise ValueError(f"Callback {callback!r} is already registered for {event_type!r}")
            self._topics.setdefault(event_type, []).append((callback, extra))

    def deregister(
        self, event_type: str, callback: Callback, details_filter: Callable[[dict[str, Any]], bool] | None = None
    ) -> bool:
        """Remove ``callback`` (registered with that ``details_filter``); whether it was there."""
        with self._lock:
            entries = self._topics.get(event_type, [])
            for index, (cb, extra) in enumerate(entries):
                if cb == callback and (extra or {}).get("filter") == details_filter:
                    del entries[index]
                    return True
        return False

    def deregister_event(self, event_type: str) -> int:
        with self._lock:
            return len(self._topics.pop(event_type, []))

    def is_registered(
        self, event_type: str, callback: Callback, details_filter: Callable[[dict[str, Any]], bool] | None = None
    ) -> bool:
        """Whether ``callback`` is registered for ``event_type`` with that ``details_filter``."""
        with self._lock:
            return any(
                cb == callback and (extra or {}).get("filter") == details_filter
                for cb, extra in self._topics.get(event_type, [])
            )

    def listeners_iter(self) -> Iterable[tuple[str, list[Callback]]]:
        with self._lock:
            return [(topic, [cb for cb, _ in entries]) for topic, entries in self._topics.items()]

    def can_be_registered(self, event_type: str) -> bool:
        return True

    def can_trigger_notification(self, event_type: str) -> bool:
        return event_type != self.ANY

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._topics.values())

    def reset(self) -> None:
        with self._lock:
            self._topics.clear()

    def notify(self, event_type: str, details: dict[str, Any]) -> None:
        """Call every callback registered for ``event_type`` and for ``ANY``.

        A callback that raises is logged and does not stop the others.
        """
        with self._lock:
            entries = list(self._topics.get(event_type, [])) + list(self._topics.get(self.ANY, []))
        for callback, extra in entries:
            assert extra is not None
            flt = extra["filter"]
            if flt is not None and not flt(details):
                continue
            args = extra["args"] or ()
            try:
                callback(event_type, details, *args, **extra["kwargs"])
            except Exception:
                LOG.exception("Notifier callback %r for %r failed", callback, event_type)
