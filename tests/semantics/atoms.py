"""Atoms, retry controllers, deciders and factories for the semantics tests.

Workers import this module (``CELERYFLOW_IMPORTS=tests.semantics.atoms``), so
everything here is registered: module-level classes with JSON constructor
arguments and module-level functions. Each call is appended to a trace file
(the ``trace`` constructor argument), one JSON line per call; small O_APPEND
writes are atomic across processes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from celeryflow import registry, retry, task
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow


class StepError(RuntimeError):
    """The failure the tests inject."""


def record(trace: str, what: str, name: str, **data: Any) -> None:
    line = json.dumps({"what": what, "name": name, "t": time.time(), "pid": os.getpid(), **data},
                      sort_keys=True, default=repr)
    fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def read_trace(trace: str | Path) -> list[dict[str, Any]]:
    path = Path(trace)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def calls(trace: str | Path) -> list[tuple[str, str]]:
    """``[(what, name), ...]`` in the order they happened."""
    return [(entry["what"], entry["name"]) for entry in read_trace(trace)]


class Step(task.Task):
    """Records each call; returns ``value`` (default: its name).

    Args:
        fail: always fail in execute.
        fail_on: fail when the input named ``key`` has one of these values (e.g. attempts).
        key: the input ``fail_on`` looks at (it is required).
        revert_fail: fail in revert.
        delay: seconds to sleep in execute.
        revert_delay: seconds to sleep in revert.
        hang: when the ``hang`` input (require it) is true, execute sleeps this long.
        revert_hang: when the ``hang`` input is true, revert sleeps this long.
    """

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
        fail_on: list[Any] | None = None,
        key: str | None = None,
        revert_fail: bool = False,
        delay: float = 0.0,
        revert_delay: float = 0.0,
        hang: float = 0.0,
        revert_hang: float = 0.0,
    ) -> None:
        needs = list(requires or [])
        if key is not None and key not in needs:
            needs.append(key)
        super().__init__(name=name, provides=provides, requires=needs or None, rebind=rebind, inject=inject)
        self.trace = trace
        self.value = value
        self.fail = fail
        self.fail_on = list(fail_on or [])
        self.key = key
        self.revert_fail = revert_fail
        self.delay = delay
        self.revert_delay = revert_delay
        self.hang = hang
        self.revert_hang = revert_hang

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        record(self.trace, "execute", str(self.name), args=kwargs)
        if self.hang and kwargs.get("hang"):
            time.sleep(self.hang)
        if self.delay:
            time.sleep(self.delay)
        if self.fail or (self.key is not None and kwargs.get(self.key) in self.fail_on):
            raise StepError(f"{self.name} failed (inputs {sorted(kwargs.items())})")
        return self.name if self.value is None else self.value

    def revert(self, *args: Any, **kwargs: Any) -> None:
        record(self.trace, "revert", str(self.name), args={k: v for k, v in kwargs.items() if k != "flow_failures"})
        if self.revert_delay:
            time.sleep(self.revert_delay)
        if self.revert_hang and kwargs.get("hang"):
            time.sleep(self.revert_hang)
        if self.revert_fail:
            raise StepError(f"revert of {self.name} failed")


class Hanging(Step):
    """A Step that sleeps ``hang`` seconds when the ``hang`` input is true (store value)."""

    def __init__(self, name: str, trace: str, *, hang: float = 60.0, **kwargs: Any) -> None:
        super().__init__(name, trace, hang=hang, requires=["hang"], **kwargs)


class FailureWitness(Step):
    """A Step whose revert also records the ``flow_failures`` it received: ``{name: [type, type names]}``."""

    def revert(self, *args: Any, **kwargs: Any) -> None:
        seen = {name: [type(f).__name__, list(f.exception_type_names)]
                for name, f in (kwargs.get("flow_failures") or {}).items()}
        record(self.trace, "flow_failures", str(self.name), seen=seen)
        super().revert(*args, **kwargs)


def _retry_record(trace: str | None, what: str, name: str | None, history: Any, **data: Any) -> None:
    if trace:
        record(trace, what, str(name), attempts=len(history), **data)


class TracedTimes(retry.Times):
    """``retry.Times`` that records its execute/revert calls."""

    def __init__(self, attempts: int = 1, name: str | None = None, provides: Any = None,
                 trace: str | None = None, **kwargs: Any) -> None:
        super().__init__(attempts, name, provides, **kwargs)
        self.trace = trace

    def execute(self, history: Any, *args: Any, **kwargs: Any) -> int:
        value = super().execute(history, *args, **kwargs)
        _retry_record(self.trace, "execute", self.name, history, value=value)
        return value

    def revert(self, history: Any, *args: Any, **kwargs: Any) -> None:
        _retry_record(self.trace, "revert", self.name, history)


class TracedForEach(retry.ForEach):
    def __init__(self, values: list[Any], name: str | None = None, provides: Any = None,
                 trace: str | None = None, **kwargs: Any) -> None:
        super().__init__(values, name, provides, **kwargs)
        self.trace = trace

    def execute(self, history: Any, *args: Any, **kwargs: Any) -> Any:
        value = super().execute(history, *args, **kwargs)
        _retry_record(self.trace, "execute", self.name, history, value=value)
        return value

    def revert(self, history: Any, *args: Any, **kwargs: Any) -> None:
        _retry_record(self.trace, "revert", self.name, history)


class TracedParameterizedForEach(retry.ParameterizedForEach):
    def __init__(self, name: str | None = None, provides: Any = None, trace: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name, provides, **kwargs)
        self.trace = trace

    def execute(self, history: Any, values: Any, *args: Any, **kwargs: Any) -> Any:
        value = super().execute(history, values, *args, **kwargs)
        _retry_record(self.trace, "execute", self.name, history, value=value)
        return value

    def revert(self, history: Any, *args: Any, **kwargs: Any) -> None:
        _retry_record(self.trace, "revert", self.name, history)


class TracedAlwaysRevert(retry.AlwaysRevert):
    def __init__(self, name: str | None = None, trace: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.trace = trace

    def revert(self, history: Any, *args: Any, **kwargs: Any) -> None:
        _retry_record(self.trace, "revert", self.name, history)


class TracedAlwaysRevertAll(retry.AlwaysRevertAll):
    def __init__(self, name: str | None = None, trace: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.trace = trace

    def revert(self, history: Any, *args: Any, **kwargs: Any) -> None:
        _retry_record(self.trace, "revert", self.name, history)


class SetProvider(retry.Retry):
    """A controller whose value is a set: not JSON, so it fails (naming itself)."""

    def execute(self, history: Any, *args: Any, **kwargs: Any) -> Any:
        return {1, 2, 3}

    def on_failure(self, history: Any, *args: Any, **kwargs: Any) -> str:
        return retry.RETRY


class Undecided(retry.Retry):
    """A controller whose on_failure raises."""

    def execute(self, history: Any, *args: Any, **kwargs: Any) -> Any:
        return len(history) + 1

    def on_failure(self, history: Any, *args: Any, **kwargs: Any) -> str:
        raise KeyError("no idea")


class Vanishing(task.Task):
    """Unregistered by a test to play an atom class that no longer exists."""

    def execute(self) -> str:
        return "here"


# ----------------------------------------------------------------------------- deciders


@registry.register
def allow(history: dict[str, Any]) -> bool:
    return True


@registry.register
def deny(history: dict[str, Any]) -> bool:
    return False


@registry.register
def said_yes(history: dict[str, Any]) -> bool:
    """True when the (single) predecessor returned "yes"."""
    return list(history.values()) == ["yes"]


@registry.register
def explode(history: dict[str, Any]) -> bool:
    raise ZeroDivisionError("decider blew up")


# ----------------------------------------------------------------------------- factories


@registry.register
def hanging_chain(trace: str, hang: float = 60.0) -> linear_flow.Flow:
    """a -> b -> slow (hangs while the store says hang) -> c."""
    return linear_flow.Flow("hanging").add(
        Step("a", trace, provides="a"),
        Step("b", trace, provides="b"),
        Hanging("slow", trace, provides="slow", hang=hang),
        Step("c", trace, provides="c"),
    )


@registry.register
def reverting_chain(trace: str, hang: float = 60.0) -> linear_flow.Flow:
    """a -> b (its revert hangs while the store says hang) -> c (fails)."""
    return linear_flow.Flow("reverting").add(
        Step("a", trace, provides="a"),
        Step("b", trace, provides="b", requires=["hang"], revert_hang=hang),
        Step("c", trace, provides="c", fail=True),
    )


@registry.register
def times_flow(trace: str, attempts: int = 3, fail_on: list[int] | None = None) -> linear_flow.Flow:
    """before -> [r=Times(attempts) provides attempt: x -> y (fails on fail_on attempts)] -> after."""
    sub = linear_flow.Flow("sub", retry=TracedTimes(attempts, name="r", provides="attempt", trace=trace)).add(
        Step("x", trace, key="attempt"),
        Step("y", trace, key="attempt", fail_on=fail_on if fail_on is not None else [1, 2]),
    )
    return linear_flow.Flow("times").add(Step("before", trace), sub, Step("after", trace))


__all__ = [
    "FailureWitness",
    "Hanging",
    "SetProvider",
    "Step",
    "StepError",
    "TracedAlwaysRevert",
    "TracedAlwaysRevertAll",
    "TracedForEach",
    "TracedParameterizedForEach",
    "TracedTimes",
    "Undecided",
    "Vanishing",
    "allow",
    "calls",
    "deny",
    "explode",
    "graph_flow",
    "hanging_chain",
    "read_trace",
    "said_yes",
    "record",
    "reverting_chain",
    "times_flow",
    "unordered_flow",
]
