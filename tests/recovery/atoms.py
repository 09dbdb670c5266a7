"""Atoms and flow factories for the fault-injection suite (bench/soak.py has its own: bench/soak_flows.py).

Worker processes import this module (``CELERYFLOW_IMPORTS=tests.recovery.atoms``).
Every call appends one line ``<what> <atom> <pid>`` to a trace file (small
O_APPEND writes are atomic across processes), so a test knows which process runs
which atom and how many times each atom was executed or reverted.

``Work(hold=<path>)`` blocks until the file ``<path>`` exists: the test kills or
stops the process running it meanwhile, then creates the file. ``Work(crash=True)``
SIGKILLs its own process every time it executes (a poison atom).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from celeryflow import registry, task
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow

#: a held atom gives up waiting after this long (a test never hangs forever)
HOLD_LIMIT = 300.0


def record(trace: str, what: str, name: str) -> None:
    fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {name} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def read_trace(trace: str | Path) -> list[tuple[str, str, int]]:
    path = Path(trace)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        what, name, pid = line.split(" ")
        out.append((what, name, int(pid)))
    return out


def counts(trace: str | Path, what: str = "execute") -> Counter[str]:
    return Counter(name for w, name, _ in read_trace(trace) if w == what)


class Work(task.Task):
    """Records itself, optionally waits for a gate file, sleeps, or kills its own process."""

    def __init__(
        self,
        name: str,
        trace: str,
        *,
        provides: Any = None,
        requires: Any = None,
        hold: str | None = None,
        delay: float = 0.0,
        crash: bool = False,
        fail: bool = False,
    ) -> None:
        super().__init__(name=name, provides=provides, requires=requires)
        self.trace = trace
        self.hold = hold
        self.delay = delay
        self.crash = crash
        self.fail = fail

    def execute(self, **kwargs: Any) -> str:
        record(self.trace, "execute", str(self.name))
        if self.crash:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.hold:
            deadline = time.monotonic() + HOLD_LIMIT
            while not os.path.exists(self.hold) and time.monotonic() < deadline:
                time.sleep(0.02)
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError(f"{self.name} failed on purpose")
        record(self.trace, "done", str(self.name))
        return str(self.name)

    def revert(self, *args: Any, **kwargs: Any) -> None:
        record(self.trace, "revert", str(self.name))


@registry.register
def chain(trace: str, n: int = 4, hold_at: int | None = None, hold: str | None = None,
          delay: float = 0.0, crash_at: int | None = None) -> linear_flow.Flow:
    """s0 -> s1 -> ... (``hold_at`` waits for ``hold``; ``crash_at`` kills its worker every time)."""
    return linear_flow.Flow(f"chain{n}").add(*(
        Work(f"s{i}", trace, hold=hold if i == hold_at else None, delay=delay, crash=(i == crash_at))
        for i in range(n)
    ))


@registry.register
def fan(trace: str, n: int = 6, delay: float = 0.0) -> unordered_flow.Flow:
    return unordered_flow.Flow(f"fan{n}").add(*(Work(f"u{i}", trace, delay=delay) for i in range(n)))


@registry.register
def diamond(trace: str, hold_at: str | None = None, hold: str | None = None, delay: float = 0.0) -> graph_flow.Flow:
    """a -> (b, c) -> d."""
    def w(name: str, **kw: Any) -> Work:
        return Work(name, trace, hold=hold if name == hold_at else None, delay=delay, **kw)

    return graph_flow.Flow("diamond").add(
        w("a", provides="a"),
        w("b", provides="b", requires=["a"]),
        w("c", provides="c", requires=["a"]),
        w("d", provides="d", requires=["b", "c"]),
    )
