"""Atoms for the engine scenario tests.

This module is importable by separate worker processes (``CELERYFLOW_IMPORTS=
tests.engine.atoms``): everything a worker needs is a registered class with JSON
constructor arguments. Each call is appended to a trace file named by the
atom's ``trace`` constructor argument, one line per call (small O_APPEND
writes are atomic across processes).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celeryflow import registry, task
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow


class StepError(RuntimeError):
    """The failure the scenarios inject."""


def record(trace: str, what: str, name: str, extra: str = "") -> None:
    fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {name} {extra}".rstrip().encode() + b"\n")
    finally:
        os.close(fd)


def read_trace(trace: str | Path) -> list[tuple[str, str]]:
    path = Path(trace)
    if not path.exists():
        return []
    return [tuple(line.split(" ", 2)[:2]) for line in path.read_text().splitlines()]  # type: ignore[misc]


class Step(task.Task):
    """Returns ``value`` (default: its name); can fail in execute or revert on demand."""

    def __init__(
        self,
        name: str,
        trace: str,
        *,
        provides: Any = None,
        requires: Any = None,
        rebind: Any = None,
        inject: Any = None,
        value: Any = None,
        fail: bool = False,
        revert_fail: bool = False,
        delay: float = 0.0,
    ) -> None:
        super().__init__(name=name, provides=provides, requires=requires, rebind=rebind, inject=inject)
        self.trace = trace
        self.value = value
        self.fail = fail
        self.revert_fail = revert_fail
        self.delay = delay

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        record(self.trace, "execute", self.name, repr(sorted(kwargs.items())))
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise StepError(f"{self.name} failed")
        return self.name if self.value is None else self.value

    def revert(self, *args: Any, **kwargs: Any) -> None:
        record(self.trace, "revert", self.name)
        if self.revert_fail:
            raise StepError(f"revert of {self.name} failed")


class Adder(task.Task):
    """x + y, with an optional z."""

    def execute(self, x: int, y: int, z: int = 0) -> int:
        return x + y + z


class Pair(task.Task):
    def execute(self, seed: int) -> tuple[int, int]:
        return seed, seed * 10


class Mapping(task.Task):
    def execute(self, seed: int) -> dict[str, int]:
        return {"small": seed, "big": seed * 100}


class Weird(task.Task):
    """Returns a value that JSON cannot hold."""

    def execute(self) -> Any:
        return {"ok": 1, "bad": object()}


@registry.register
def diamond(trace: str, fail: str | None = None) -> graph_flow.Flow:
    """a -> (b, c) -> d, linked by data."""
    return graph_flow.Flow("diamond").add(
        Step("a", trace, provides="a", fail=fail == "a"),
        Step("b", trace, provides="b", requires=["a"], fail=fail == "b"),
        Step("c", trace, provides="c", requires=["a"], fail=fail == "c"),
        Step("d", trace, provides="d", requires=["b", "c"], fail=fail == "d"),
    )


@registry.register
def chain_of(trace: str, n: int, fail_at: int | None = None) -> linear_flow.Flow:
    return linear_flow.Flow(f"chain{n}").add(
        *(Step(f"s{i}", trace, fail=(i == fail_at)) for i in range(n))
    )


@registry.register
def fan_out(trace: str, n: int) -> unordered_flow.Flow:
    return unordered_flow.Flow(f"fan{n}").add(*(Step(f"u{i}", trace, provides=f"u{i}") for i in range(n)))


class Exits(task.Task):
    """Raises a BaseException that is not an Exception (``SystemExit``, ...) from execute."""

    def __init__(self, name: str, trace: str, *, raises: str = "SystemExit") -> None:
        super().__init__(name=name)
        self.trace = trace
        self.raises = raises

    def execute(self) -> None:
        record(self.trace, "execute", self.name)
        kinds: dict[str, type[BaseException]] = {
            "SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt, "GeneratorExit": GeneratorExit,
        }
        raise kinds[self.raises](3) if self.raises == "SystemExit" else kinds[self.raises]()

    def revert(self, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        record(self.trace, "revert", self.name)


# An existing Celery project's tasks, adopted as atoms with CeleryTask (tests/engine/test_celery_task.py).
from celery import Celery  # noqa: E402

host_app = Celery("adopted-host", set_as_current=False)


@host_app.task(name="shop.charge")
def charge(amount: int, trace: str) -> str:
    record(trace, "execute", "charge")
    return f"charge-{amount}"


@host_app.task(name="shop.refund", bind=True)
def refund(self: Any, result: str, trace: str) -> None:
    record(trace, "revert", "charge", result)


@host_app.task(name="shop.ship")
def ship(charge_id: str, trace: str, fail: bool = False) -> str:
    record(trace, "execute", "ship")
    if fail:
        raise StepError(f"cannot ship {charge_id}")
    return f"shipped {charge_id}"


class WhereAmI(task.Task):
    """Records the worker and queue its execute message reached (per-atom Celery options)."""

    def __init__(self, name: str, trace: str, *, hang_in_revert: bool = False, fail: bool = False) -> None:
        super().__init__(name=name)
        self.trace = trace
        self.hang_in_revert = hang_in_revert
        self.fail = fail

    def execute(self) -> str:
        from celery import current_task

        request = current_task.request
        queue = (request.delivery_info or {}).get("routing_key")
        record(self.trace, "execute", self.name, f"{request.hostname} {queue}")
        if self.fail:
            raise StepError(f"{self.name} failed")
        return str(queue)

    def revert(self, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        record(self.trace, "revert", self.name)
        if self.hang_in_revert:
            deadline = time.monotonic() + 120  # a revert that hangs: only a time limit ends it
            while time.monotonic() < deadline:
                time.sleep(0.05)
