"""Process-local wake-ups: a waiter in this process hears about commits made in this process at once.

Remote commits are found by polling the logbook; this only removes the polling
delay when the worker runs in the same process (the embedded default).
"""

from __future__ import annotations

import threading

_cond = threading.Condition()
_generation = 0


def notify() -> None:
    global _generation
    with _cond:
        _generation += 1
        _cond.notify_all()


def generation() -> int:
    return _generation


def wait(seen: int, timeout: float) -> int:
    """Wait until something was committed after generation ``seen`` (or timeout)."""
    with _cond:
        if _generation == seen:
            _cond.wait(timeout)
        return _generation
