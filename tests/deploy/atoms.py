"""Atoms for the deployment tests (``CELERYFLOW_IMPORTS=tests.deploy.atoms``).

Each call appends a line to the trace file named by the atom's ``trace`` argument
(small O_APPEND writes are atomic across processes).
"""

from __future__ import annotations

import os
from typing import Any

from celeryflow import task
from celeryflow.patterns import linear_flow
from tests.jobs.flows import read_trace, record

__all__ = ["FailsUntil", "Note", "notes", "read_trace", "record"]


class Note(task.Task):
    """Records ``execute <name> <pid>`` / ``revert <name>``; returns its name."""

    def __init__(self, name: str, trace: str, fail: bool = False) -> None:
        super().__init__(name=name)
        self.trace = trace
        self.fail = fail

    def execute(self) -> str:
        record(self.trace, f"execute {self.name} {os.getpid()}")
        if self.fail:
            raise RuntimeError(f"{self.name} failed on purpose")
        return self.name

    def revert(self, *args: Any, **kwargs: Any) -> None:
        record(self.trace, f"revert {self.name}")


def notes(name: str, trace: str, *steps: str) -> linear_flow.Flow:
    """A linear flow of :class:`Note` atoms named ``steps``."""
    return linear_flow.Flow(name).add(*(Note(step, trace) for step in steps))


class FailsUntil(task.Task):
    """Fails until it has run ``succeed_on`` times (counted in the trace file, across processes)."""

    def __init__(self, name: str, trace: str, succeed_on: int = 3) -> None:
        super().__init__(name=name)
        self.trace = trace
        self.succeed_on = succeed_on

    def execute(self) -> int:
        record(self.trace, f"execute {self.name} {os.getpid()}")
        runs = sum(1 for line in read_trace(self.trace) if line.startswith(f"execute {self.name} "))
        if runs < self.succeed_on:
            raise RuntimeError(f"{self.name}: run {runs} fails on purpose")
        return runs
