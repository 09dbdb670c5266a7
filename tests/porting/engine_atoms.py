"""Module-level atoms for the porting tests (workers import this module by name)."""

from __future__ import annotations

import threading
import time
from typing import Any

from celeryflow import task

#: what the atoms of this process did, in order (the embedded default and in-process workers)
JOURNAL: list[str] = []
_lock = threading.Lock()
_running = [0, 0]  # now, peak


def note(what: str) -> None:
    with _lock:
        JOURNAL.append(what)


class Echo(task.Task):
    """Notes its own name when its code runs; returns its input plus one letter."""

    def execute(self, value: str) -> str:
        note(f"code {self.name}")
        return value + self.name[-1]


class Overlap(task.Task):
    """Counts how many of its kind run at once (peak in :func:`peak`)."""

    def execute(self) -> None:
        with _lock:
            _running[0] += 1
            _running[1] = max(_running[1], _running[0])
        time.sleep(0.02)  # simulated work, long enough for siblings to overlap
        with _lock:
            _running[0] -= 1


def reset() -> None:
    with _lock:
        JOURNAL.clear()
        _running[:] = [0, 0]


def peak() -> int:
    return _running[1]


class Double(task.Task):
    default_provides = "doubled"

    def execute(self, x: int) -> int:
        return 2 * x


class AddOne(task.Task):
    default_provides = "result"

    def execute(self, doubled: int) -> int:
        return doubled + 1


class Boom(task.Task):
    def execute(self) -> Any:
        raise RuntimeError("boom")
