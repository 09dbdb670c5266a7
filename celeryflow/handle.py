"""Web-friendly, non-blocking use: ``submit()`` returns a :class:`FlowHandle` at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeryflow import exceptions, states
from celeryflow.engines import CeleryEngine, load, load_from_detail, load_from_factory
from celeryflow.engines.waiter import Follower
from celeryflow.flow import Flow
from celeryflow.runtime import context


def submit(
    flow_or_factory: Any,
    store: Mapping[str, Any] | None = None,
    app: Any = None,
    backend: Any = None,
    *,
    factory_args: Any = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> FlowHandle:
    """Persist a flow (or a registered factory's flow) and send its first atoms; don't wait.

    Returns:
        A handle with the flow id; re-attach from any process with ``FlowHandle(id)``.
    """
    if isinstance(flow_or_factory, Flow):
        engine = load(flow_or_factory, store=store, app=app, backend=backend, **options)
    elif callable(flow_or_factory):
        engine = load_from_factory(
            flow_or_factory, factory_args=factory_args, factory_kwargs=factory_kwargs, store=store, app=app,
            backend=backend, **options,
        )
    else:
        raise TypeError(f"submit() takes a flow or a flow factory, not {type(flow_or_factory).__name__}")
    engine.start()
    return FlowHandle(engine.flow_uuid, app=engine.app, backend=engine.backend, _engine=engine)


class FlowHandle:
    """A flow in the logbook, seen from any process.

    Args:
        flow_id: the flow's id (``handle.id`` of the submitting process).
        app: the Celery app (default: the installed app or the embedded default).
        backend: the logbook URL or backend (default: the app's).
    """

    def __init__(self, flow_id: str, app: Any = None, backend: Any = None, _engine: CeleryEngine | None = None) -> None:
        self.id = flow_id
        self._engine = _engine or load_from_detail(flow_id, app=app, backend=backend)

    @property
    def engine(self) -> CeleryEngine:
        return self._engine

    @property
    def state(self) -> str:
        return self._engine.storage.get_flow_state()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the flow ends; return its results, or raise like ``engine.run()``."""
        engine = self._engine
        state = Follower(engine.backend, self.id, 0).follow(lambda row: None, timeout)
        if state in states.FLOW_TERMINAL:
            context.finished_live(self.id)
        engine.raise_for_state(state)
        return self.results()

    def results(self) -> dict[str, Any]:
        return self._engine.storage.fetch_all()

    def suspend(self) -> None:
        self._engine.suspend()

    def resume(self) -> None:
        """Run a suspended (or stalled) flow again from where it stopped; don't wait."""
        self._engine.start()

    def revert(self) -> None:
        """Compensate a finished or stuck flow (every executed atom is reverted once)."""
        self._engine.revert()

    @property
    def done(self) -> bool:
        return self.state in states.FLOW_TERMINAL

    # -- the parts of Celery's AsyncResult people reach for --------------------------------

    def ready(self) -> bool:
        """True once the flow stopped: SUCCESS, REVERTED, FAILURE or SUSPENDED (like ``AsyncResult.ready``)."""
        return self.done

    def successful(self) -> bool:
        """True when the flow ended SUCCESS."""
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        """True when the flow ended REVERTED (compensated) or FAILURE (a revert failed too)."""
        return self.state in (states.REVERTED, states.FAILURE)

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """``wait()`` under AsyncResult's name: the results, or the flow's exception.

        With ``propagate=False`` the exception is returned instead of raised.
        """
        if propagate:
            return self.wait(timeout)
        try:
            return self.wait(timeout)
        except exceptions.Timeout:
            raise
        except Exception as exc:
            return exc

    def __repr__(self) -> str:
        return f"FlowHandle({self.id!r})"
