"""Failure and crash injection: make a chosen atom fail, or the process die after it, without touching its code.

A :class:`Fault` says where an atom fails: ``"before"`` its execute (its code never
runs), ``"after"`` it (its code ran, its effects are real, then it fails as if its last
line raised) or in its ``"revert"``. A :class:`CrashPoint` says where the process running
the flow dies: after an atom's execute returned, before its outcome reached the logbook
(``recorded=False``: it runs again on resume), or just after it did (``recorded=True``:
the atoms it made ready were never sent).

Injection goes through :mod:`celeryflow.runtime.intercept` and only acts in this process
on the flows it was armed for: the embedded default and the in-process worker
(``celery.contrib.testing.worker.start_worker``) run their atoms here. A separate
``celery worker`` process is never affected: nothing a logbook row or a message says
makes a production worker fail on purpose.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from celeryflow.exceptions import CeleryflowError
from celeryflow.runtime import intercept
from celeryflow.runtime.logbook import EXECUTE, REVERT

#: where a Fault strikes
BEFORE, AFTER, IN_REVERT = "before", "after", "revert"
WHERES = (BEFORE, AFTER, IN_REVERT)


class InjectedFailure(CeleryflowError):
    """The exception an injected :class:`Fault` raises in place of (or after) the atom's own code."""


@dataclass(frozen=True)
class Fault:
    """Make atom ``atom`` fail ``where`` (``"before"``/``"after"`` its execute, or in its ``"revert"``).

    Args:
        atom: the atom's name in the flow.
        where: ``"before"``, ``"after"`` or ``"revert"``.
        times: fail only the first ``times`` calls (None: every call; a retry never gets past it).
        error: the exception to raise (default: an :class:`InjectedFailure` naming the point).
    """

    atom: str
    where: str = AFTER
    times: int | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        if self.where not in WHERES:
            raise ValueError(f"Fault(where={self.where!r}): use one of {', '.join(WHERES)}")

    def describe(self) -> str:
        if self.where == IN_REVERT:
            return f"{self.atom} fails in its revert"
        return f"{self.atom} fails {self.where} its execute"

    def exception(self) -> BaseException:
        return self.error if self.error is not None else InjectedFailure(f"injected: {self.describe()}")


def fail_before(atom: str, **kwargs: Any) -> Fault:
    """``atom`` fails instead of running its execute."""
    return Fault(atom, BEFORE, **kwargs)


def fail_after(atom: str, **kwargs: Any) -> Fault:
    """``atom``'s execute runs (its effects happen), then it fails."""
    return Fault(atom, AFTER, **kwargs)


def fail_revert(atom: str, **kwargs: Any) -> Fault:
    """``atom``'s revert fails (the flow ends FAILURE: its compensation could not finish)."""
    return Fault(atom, IN_REVERT, **kwargs)


@dataclass(frozen=True)
class CrashPoint:
    """The process running the flow dies once ``atom``'s execute has returned.

    Args:
        atom: the atom's name in the flow.
        recorded: False (default): before the outcome reached the logbook (the worker died
            mid-delivery; the atom is still claimed and runs again when the flow resumes).
            True: right after it was recorded, before the atoms it made ready were sent
            (the caller died; on resume they are sent, the atom does not run again).
    """

    atom: str
    recorded: bool = False

    def describe(self) -> str:
        when = "after its outcome was recorded" if self.recorded else "before its outcome was recorded"
        return f"the process dies after {self.atom}'s execute, {when}"


def crash_after(atom: str, *, recorded: bool = False) -> CrashPoint:
    """The process dies after ``atom``'s execute (see :class:`CrashPoint`)."""
    return CrashPoint(atom, recorded)


@dataclass
class _Plan:
    faults: tuple[Fault, ...]
    crash: CrashPoint | None
    calls: dict[tuple[str, str], int] = field(default_factory=dict)
    #: set once the crash point was reached: from then on the flow's deliveries are lost
    crashed: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0


class Injector:
    """The interceptor behind :class:`Fault` and :class:`CrashPoint`, armed per flow id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, _Plan] = {}
        self._idle = threading.Condition(self._lock)

    # ----------------------------------------------------------------- arming
    def arm(self, flow_uuid: str, faults: Iterable[Fault] = (), crash: CrashPoint | None = None) -> None:
        """Apply ``faults`` / ``crash`` to the atoms of ``flow_uuid`` run in this process."""
        with self._lock:
            self._plans[flow_uuid] = _Plan(tuple(faults), crash)
            intercept.add(self)

    def disarm(self, flow_uuid: str) -> None:
        """Let ``flow_uuid`` run normally again (a resume after a crash)."""
        with self._lock:
            self._plans.pop(flow_uuid, None)
            if not self._plans:
                intercept.remove(self)

    def crashed(self, flow_uuid: str) -> threading.Event | None:
        """Set once the flow's crash point was reached (None: no crash armed for it)."""
        with self._lock:
            plan = self._plans.get(flow_uuid)
            return plan.crashed if plan is not None and plan.crash is not None else None

    def wait_idle(self, flow_uuid: str, timeout: float) -> bool:
        """Wait until no atom of the flow is inside its code in this process."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight(flow_uuid) == 0, timeout)

    def _in_flight(self, flow_uuid: str) -> int:
        plan = self._plans.get(flow_uuid)
        return plan.in_flight if plan is not None else 0

    def _plan(self, flow_uuid: str) -> _Plan | None:
        with self._lock:
            return self._plans.get(flow_uuid)

    # ----------------------------------------------------------------- the interceptor
    def admit(self, flow_uuid: str, name: str, mode: str) -> bool:
        plan = self._plan(flow_uuid)
        return plan is None or not plan.crashed.is_set()

    def publish(self, flow_uuid: str, name: str, mode: str) -> bool:
        plan = self._plan(flow_uuid)
        if plan is None:
            return True
        crash = plan.crash
        if crash is not None and crash.recorded and mode == EXECUTE and crash.atom == name:
            plan.crashed.set()
        return not plan.crashed.is_set()

    def call(self, flow_uuid: str, name: str, mode: str, proceed: Callable[[], Any]) -> Any:
        plan = self._plan(flow_uuid)
        if plan is None:
            return proceed()
        if plan.crashed.is_set():
            raise intercept.Crash(f"{flow_uuid}/{name}: the process already died")
        fault = self._due(plan, name, mode)
        with self._lock:
            plan.in_flight += 1
        try:
            if fault is not None and fault.where == BEFORE:
                raise fault.exception()
            value = proceed()
            if plan.crashed.is_set():  # it died while this atom ran: nothing of it is recorded
                raise intercept.Crash(f"{flow_uuid}/{name}: the process died while it ran")
            if fault is not None:  # AFTER or IN_REVERT: the code ran, then it fails
                raise fault.exception()
            crash = plan.crash
            if crash is not None and not crash.recorded and mode == EXECUTE and crash.atom == name:
                plan.crashed.set()
                raise intercept.Crash(f"{flow_uuid}/{name}: {crash.describe()}")
            return value
        finally:
            with self._idle:
                plan.in_flight -= 1
                self._idle.notify_all()

    def _due(self, plan: _Plan, name: str, mode: str) -> Fault | None:
        """The fault that strikes this call of ``name`` (counting calls per fault)."""
        for fault in plan.faults:
            if fault.atom != name or (fault.where == IN_REVERT) != (mode == REVERT):
                continue
            with self._lock:
                key = (fault.atom, fault.where)
                count = plan.calls[key] = plan.calls.get(key, 0) + 1
            if fault.times is None or count <= fault.times:
                return fault
        return None


#: the process-wide injector the test helpers use
INJECTOR = Injector()
