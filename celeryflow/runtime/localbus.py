"""Process-local wake-ups: a waiter in this process hears about commits made in this process at once.

Remote commits are found by polling the logbook; this only removes the polling
delay when the worker runs in the same process (the embedded default).

It also orders notifications on the embedded default. A caller following a flow in this
process holds a :class:`Tap` on it; a worker thread of this process that claimed an atom of
that flow calls :func:`barrier` before running the atom's code, and waits (at most
:data:`BARRIER_TIMEOUT`) until the follower has polled the logbook after the claim and
*released* it: so the atom's RUNNING notification reaches the caller's callbacks before
anything the atom's code prints or does. ``run()`` releases after every poll; ``run_iter()``
releases when the caller resumes the iterator (TaskFlow runs nothing between two ``next()``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: the longest a claimed atom waits for the caller to deliver its RUNNING notification (seconds):
#: a caller that stops iterating ``run_iter()`` (or a callback that blocks) holds atoms this long
BARRIER_TIMEOUT = 5.0

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


class Tap:
    """A follower's hold on one flow: counts its polls and what it released."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        #: number of the last poll begun; atoms claimed before poll n began are released with n
        self.polls = 0
        self.released = 0

    def poll_begins(self) -> int:
        with _cond:
            self.polls += 1
            return self.polls

    def release(self, upto: int | None = None) -> None:
        """Let the atoms claimed before poll ``upto`` (default: the last one) run their code."""
        with _cond:
            self.released = max(self.released, self.polls if upto is None else upto)
            _cond.notify_all()


_taps: dict[str, Tap] = {}


@contextmanager
def tapping(flow_uuid: str) -> Iterator[Tap]:
    """Hold a tap on ``flow_uuid`` while following it (a nested hold keeps the outer one)."""
    with _cond:
        outer = _taps.get(flow_uuid)
        tap = _taps[flow_uuid] = Tap()
    try:
        yield tap
    finally:
        with _cond:
            if _taps.get(flow_uuid) is tap:
                if outer is not None:
                    _taps[flow_uuid] = outer
                else:
                    del _taps[flow_uuid]
            _cond.notify_all()


def barrier(flow_uuid: str, timeout: float = BARRIER_TIMEOUT) -> bool:
    """Called after an atom's claim committed: wait until a follower here released it.

    Returns False when it gave up after ``timeout``; True otherwise (also when nobody in this
    process follows the flow: remote callers see events by polling, nothing to wait for).
    """
    global _generation
    with _cond:
        tap = _taps.get(flow_uuid)
        if tap is None or tap.thread == threading.get_ident():
            return True
        target = tap.polls + 1
        _generation += 1  # wake the follower: it polls at once
        _cond.notify_all()
        deadline = time.monotonic() + timeout
        while _taps.get(flow_uuid) is tap and tap.released < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            _cond.wait(remaining)
        return True
