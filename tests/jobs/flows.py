"""Flow factories and atoms for the jobboard/conductor tests.

Importable by conductor subprocesses (``python -m tests.jobs.conductor_proc``):
factories are module-level functions, atoms registered ``Task`` subclasses with
JSON constructor arguments. Each execute appends ``<event> <atom>`` to a trace
file (small ``O_APPEND`` writes are atomic across processes).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celeryflow import registry, task
from celeryflow.patterns import linear_flow


def record(trace: str, line: str) -> None:
    fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def read_trace(trace: str | Path) -> list[str]:
    path = Path(trace)
    return path.read_text().splitlines() if path.exists() else []


class Step(task.Task):
    """Records ``start <name>`` and ``done <name>``; with ``gate`` set, waits for that file to exist
    (the crash test holds the step there and kills its conductor); with ``delay``, sleeps."""

    def __init__(self, name: str, trace: str, gate: str | None = None, delay: float = 0.0) -> None:
        super().__init__(name=name, provides=name)
        self.trace = trace
        self.gate = gate
        self.delay = delay

    def execute(self) -> str:
        record(self.trace, f"start {self.name} {os.getpid()}")
        if self.gate:
            deadline = time.monotonic() + 120
            while not os.path.exists(self.gate) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.delay:
            time.sleep(self.delay)
        record(self.trace, f"done {self.name} {os.getpid()}")
        return f"{self.name}-ok"


class Boom(task.Task):
    def __init__(self, name: str, trace: str) -> None:
        super().__init__(name=name)
        self.trace = trace

    def execute(self) -> None:
        record(self.trace, f"start {self.name} {os.getpid()}")
        raise RuntimeError(f"{self.name} failed on purpose")

    def revert(self, *args: Any, **kwargs: Any) -> None:
        record(self.trace, f"revert {self.name} {os.getpid()}")


class BadRevert(Step):
    """A step whose revert fails: a flow that fails after it ends FAILURE."""

    def revert(self, *args: Any, **kwargs: Any) -> None:
        record(self.trace, f"revert {self.name} {os.getpid()}")
        raise RuntimeError(f"{self.name} cannot be undone")


def three_steps(trace: str, gate: str | None = None, delay: float = 0.0) -> linear_flow.Flow:
    """step1 → step2 (held at ``gate`` if given) → step3."""
    return linear_flow.Flow("three-steps").add(
        Step("step1", trace), Step("step2", trace, gate=gate, delay=delay), Step("step3", trace)
    )


def failing(trace: str) -> linear_flow.Flow:
    """step1 then a failure: the flow reverts (REVERTED)."""
    return linear_flow.Flow("failing").add(Step("step1", trace), Boom("boom", trace))


def unrevertable(trace: str) -> linear_flow.Flow:
    """A failure whose compensation fails: the flow ends FAILURE."""
    return linear_flow.Flow("unrevertable").add(BadRevert("step1", trace), Boom("boom", trace))


def slow(trace: str, name: str, delay: float) -> linear_flow.Flow:
    return linear_flow.Flow(name).add(Step(f"{name}-only", trace, delay=delay))


def temporary(trace: str) -> linear_flow.Flow:
    """Registered under an explicit ref by the 'unregistered factory' test, then unregistered."""
    return linear_flow.Flow("temporary").add(Step("only", trace))


registry.allow_module(__name__)
