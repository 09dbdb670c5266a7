"""In-process wake-ups for a board's ``wait()``: a post in this process wakes its local waiters at once.

Waiters in other processes find new jobs by polling (SQL) or by the board's own
notification (Redis); these wake-ups only spare a conductor in the posting process
its polling delay.
"""

from __future__ import annotations

import threading


class Wakeups:
    """In-process wake-ups for ``wait()``: posting in this process wakes local waiters at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def bump(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, generation: int, timeout: float) -> bool:
        """True when woken (the generation moved), False after ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._generation != generation, timeout)


_wakeups: dict[tuple[str, ...], Wakeups] = {}
_wakeups_lock = threading.Lock()


def wakeups_for(*key: str) -> Wakeups:
    with _wakeups_lock:
        found = _wakeups.get(key)
        if found is None:
            found = _wakeups[key] = Wakeups()
        return found
