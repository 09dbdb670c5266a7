"""Run a flow in a test and get its :class:`~celeryflow.testing.outcome.Outcome`; crash it and resume it.

::

    runner = FlowRunner("sqlite:///tmp/logbook.db")            # the embedded default
    outcome = runner.run(make_flow(), store={...}, fail=fail_after("charge"))
    assert outcome.reverted == ["charge", "reserve"]

    crashed = runner.crash(make_flow(), crash_after("reserve"), store={...})
    again = crashed.resume()                                   # from the logbook, in this test
    assert again.executed == ["reserve", "charge"]             # reserve ran again: its outcome was lost
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from celeryflow import engines, states
from celeryflow.engines.waiter import last_event_id
from celeryflow.exceptions import CeleryflowError, Timeout
from celeryflow.flow import Flow
from celeryflow.persistence.tables import AtomRow, FlowRow
from celeryflow.testing.inject import INJECTOR, CrashPoint, Fault, Injector
from celeryflow.testing.outcome import Outcome, read_outcome

if TYPE_CHECKING:
    from celery import Celery

    from celeryflow.engines.engine import CeleryEngine
    from celeryflow.testing.check import FailurePoints

#: a flow, or a callable building one (called for every run: each run gets fresh atoms)
FlowSource = Flow | Callable[[], Flow]
Faults = Fault | Iterable[Fault] | None


class CrashNotReached(CeleryflowError):
    """The flow ended before its crash point: the atom named never finished an execute."""


def build(flow: FlowSource) -> Flow:
    """The flow itself, or what the factory returns."""
    built = flow if isinstance(flow, Flow) else flow()
    if not isinstance(built, Flow):
        raise TypeError(f"expected a flow or a callable returning one, got {type(built).__name__}")
    return built


def _faults(fail: Faults) -> tuple[Fault, ...]:
    if fail is None:
        return ()
    return (fail,) if isinstance(fail, Fault) else tuple(fail)


class FlowRunner:
    """Runs flows for a test, on one app and one logbook.

    Args:
        backend: the logbook URL (the plugin's ``celeryflow_logbook_url``: private to the test).
        app: the Celery app whose workers run the atoms; None: the embedded default.
            Failure and crash injection act on workers in this process only (the embedded
            default, ``celery.contrib.testing.worker.start_worker``).
        timeout: how long one run may take, in seconds.
    """

    def __init__(self, backend: str, app: Celery | None = None, *, timeout: float = 60.0,
                 injector: Injector = INJECTOR) -> None:
        from celeryflow.runtime.embedded import embedded_app

        self.backend = backend
        self.app = app if app is not None else embedded_app()
        self.timeout = timeout
        self.injector = injector
        #: flows crashed by this runner and not resumed yet (still armed: their deliveries are dropped)
        self.crashed: set[str] = set()

    @property
    def embedded(self) -> bool:
        from celeryflow.runtime.embedded import is_embedded

        return is_embedded(self.app)

    def __repr__(self) -> str:
        where = "embedded" if self.embedded else f"app {self.app.main!r}"
        return f"<FlowRunner {where} logbook={self.backend!r}>"

    # ------------------------------------------------------------------ running
    def load(self, flow: FlowSource, store: Mapping[str, Any] | None = None, **options: Any) -> CeleryEngine:
        """An engine for ``flow`` on this runner's app and logbook (not started)."""
        return engines.load(build(flow), store=dict(store or {}), app=self.app, backend=self.backend, **options)

    def run(self, flow: FlowSource, store: Mapping[str, Any] | None = None, *, fail: Faults = None,
            timeout: float | None = None, **options: Any) -> Outcome:
        """Run ``flow`` to its end, with the atoms named by ``fail`` made to fail; never raises for a failed flow.

        Returns:
            The outcome: ``error`` holds what ``engine.run()`` raised, if anything.

        Raises:
            ValueError: a fault names an atom the flow does not have.
            Timeout: the flow did not end within ``timeout``.
        """
        engine = self.load(flow, store, **options)
        faults = _faults(fail)
        self._check_names(engine, [f.atom for f in faults])
        engine.prepare()
        if faults:
            self.injector.arm(engine.flow_uuid, faults)
        try:
            return self._follow(engine, 0, timeout)
        finally:
            self.injector.disarm(engine.flow_uuid)

    def _follow(self, engine: CeleryEngine, after: int, timeout: float | None) -> Outcome:
        error: BaseException | None = None
        try:
            engine.run(timeout=self.timeout if timeout is None else timeout)
        except Timeout:
            raise
        except Exception as exc:  # the flow's own failure: part of the outcome
            error = exc
        return read_outcome(engine.backend, engine.compile(), engine.flow_uuid, after=after, error=error)

    def outcome(self, flow_uuid: str, after: int = 0) -> Outcome:
        """The outcome of any flow in this runner's logbook, as it stands (events after ``after``)."""
        engine = engines.load_from_detail(flow_uuid, app=self.app, backend=self.backend)
        return read_outcome(engine.backend, engine.compile(), flow_uuid, after=after)

    @staticmethod
    def _check_names(engine: CeleryEngine, names: Iterable[str]) -> None:
        atoms = engine.compile().atoms
        unknown = sorted(set(names) - set(atoms))
        if unknown:
            raise ValueError(f"flow {engine.compile().flow_name!r} has no atom {', '.join(map(repr, unknown))}; "
                             f"its atoms are: {', '.join(atoms)}")

    # ------------------------------------------------------------------ crashes
    def crash(self, flow: FlowSource, crash: CrashPoint, store: Mapping[str, Any] | None = None, *,
              fail: Faults = None, timeout: float | None = None, **options: Any) -> Crashed:
        """Start ``flow`` and stop it at ``crash`` as if the process running it died there.

        Everything this process would have done for the flow afterwards is lost: the
        crashed delivery, the messages it would have sent, the deliveries in flight.
        The flow stays in the logbook as the crash left it, for :meth:`resume`.

        Raises:
            CrashNotReached: the flow ended without reaching the crash point.
            Timeout: the crash point was not reached within ``timeout``.
        """
        engine = self.load(flow, store, **options)
        faults = _faults(fail)
        self._check_names(engine, [crash.atom, *(f.atom for f in faults)])
        engine.prepare()
        uuid = engine.flow_uuid
        self.injector.arm(uuid, faults, crash)
        crashed = self.injector.crashed(uuid)
        assert crashed is not None
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        try:
            engine.start()
            while not crashed.wait(0.02):
                state = _flow_state(engine)
                if state in states.FLOW_TERMINAL:
                    raise CrashNotReached(f"flow {uuid} ended {state} before {crash.describe()}; "
                                          f"did {crash.atom!r} run (a decider may skip it, an earlier failure "
                                          "may stop the flow)?")
                if time.monotonic() > deadline:
                    raise Timeout(f"flow {uuid} did not reach its crash point ({crash.describe()}) in {limit:g}s")
            if not self.injector.wait_idle(uuid, max(0.1, deadline - time.monotonic())):
                raise Timeout(f"atoms of flow {uuid} still ran {limit:g}s after its crash point")
        except BaseException:
            self.injector.disarm(uuid)
            raise
        if self.embedded:
            from celeryflow.runtime.embedded import unwatch

            unwatch(engine.backend, uuid)  # the embedded sweep died with the process
        self.crashed.add(uuid)
        at = last_event_id(engine.backend, uuid)
        return Crashed(self, crash, read_outcome(engine.backend, engine.compile(), uuid), at)

    def resume(self, crashed: Crashed, store: Mapping[str, Any] | None = None, *,
               timeout: float | None = None) -> Outcome:
        """Pick the crashed flow up from the logbook (``engines.load_from_detail`` + ``run``), to its end.

        Claims the dead process held count as stale at once (no waiting out the heartbeat
        timeout): their atoms run again, as they would once the timeout passed.

        Returns:
            The outcome of the resumed run: ``order`` is what ran after the crash.
        """
        uuid = crashed.flow_uuid
        self.injector.disarm(uuid)
        self.crashed.discard(uuid)
        engine = engines.load_from_detail(uuid, store=dict(store or {}), app=self.app, backend=self.backend)
        _forget_claims(engine, uuid)
        return self._follow(engine, last_event_id(engine.backend, uuid), timeout)

    def close(self) -> None:
        """Disarm the flows this runner crashed and never resumed (the fixtures call it after the test)."""
        for uuid in list(self.crashed):
            self.injector.disarm(uuid)
        self.crashed.clear()

    # ------------------------------------------------------------------ checks
    def for_each_failure_point(self, flow: FlowSource, store: Mapping[str, Any] | None = None,
                               **kwargs: Any) -> FailurePoints:
        """:func:`celeryflow.testing.check.for_each_failure_point` on this runner."""
        from celeryflow.testing.check import for_each_failure_point

        return for_each_failure_point(flow, store, runner=self, **kwargs)


@dataclass
class Crashed:
    """A flow stopped at its crash point (``FlowRunner.crash``).

    Attributes:
        point: where it crashed.
        outcome: the flow as the crash left it in the logbook (``order``: what ran before it).
        at: the last event id at the crash (a resumed run's events come after it).
    """

    runner: FlowRunner
    point: CrashPoint
    outcome: Outcome
    at: int

    @property
    def flow_uuid(self) -> str:
        return self.outcome.flow_uuid

    def resume(self, store: Mapping[str, Any] | None = None, *, timeout: float | None = None) -> Outcome:
        """``runner.resume(self, store)``."""
        return self.runner.resume(self, store, timeout=timeout)


def _flow_state(engine: CeleryEngine) -> str:
    uuid = engine.flow_uuid
    return str(engine.backend.run(lambda s: s.scalar(select(FlowRow.state).where(FlowRow.uuid == uuid)),
                                  readonly=True))


def _forget_claims(engine: CeleryEngine, flow_uuid: str) -> None:
    """The claims of atoms in the dead process's hands lose their heartbeat: resume re-drives them."""
    engine.backend.run(lambda s: s.execute(
        update(AtomRow)
        .where(AtomRow.flow_uuid == flow_uuid, AtomRow.state.in_((states.RUNNING, states.REVERTING)),
               AtomRow.queued.is_(False))
        .values(heartbeat_at=None)
        .execution_options(synchronize_session=False)
    ))
