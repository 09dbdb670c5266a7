"""Transactional submit, shared by the web integrations (Django, Flask-SQLAlchemy).

A flow submitted inside the application's own database transaction is written through
that transaction when the logbook lives in the same database (rollback: nothing left,
nothing sent; commit: its first messages are published right after), or recorded and
written after the commit when it lives elsewhere. These are the pieces both use: a
backend stand-in that runs the engine's writes in a given session (:class:`InSession`),
one that keeps them for later (:class:`Recorder`), and the steps around the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from celeryflow.engines.engine import CeleryEngine
    from celeryflow.persistence.backends.base import Backend
    from celeryflow.runtime.logbook import Dispatch

LOG = logging.getLogger(__name__)


class InSession:
    """Quacks like a Backend for the engine's persist/start steps: runs them in ``session``."""

    def __init__(self, real: Backend, session: Session) -> None:
        self._real = real
        self._session = session
        self.url = real.url

    def run(self, fn: Callable[[Session], Any], **kwargs: Any) -> Any:
        result = fn(self._session)
        self._session.flush()
        return result

    def lock_flow(self, session: Session, flow_uuid: str, *, shared: bool = False) -> Any:
        return self._real.lock_flow(session, flow_uuid, shared=shared)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class Recorder:
    """Quacks like a Backend for ``prepare()``: keeps the write for later (after the application's commit)."""

    def __init__(self, real: Backend) -> None:
        self._real = real
        self.url = real.url
        self.writes: list[Callable[[Session], Any]] = []

    def run(self, fn: Callable[[Session], Any], **kwargs: Any) -> Any:
        self.writes.append(fn)
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def build(flow_or_factory: Any, store: Mapping[str, Any] | None, app: Any, backend: Backend,
          factory_args: Any, factory_kwargs: Mapping[str, Any] | None, options: Mapping[str, Any]) -> CeleryEngine:
    """The engine for a flow or a registered flow factory."""
    from celeryflow import engines
    from celeryflow.flow import Flow

    if isinstance(flow_or_factory, Flow):
        return engines.load(flow_or_factory, store=store, app=app, backend=backend, **options)
    if callable(flow_or_factory):
        return engines.load_from_factory(flow_or_factory, factory_args=factory_args, factory_kwargs=factory_kwargs,
                                         store=store, app=app, backend=backend, **options)
    raise TypeError(f"submit() takes a flow or a flow factory, not {type(flow_or_factory).__name__}")


def check_broker(engine: CeleryEngine) -> None:
    """Raise BrokerUnavailable (or TransportNotInstalled) before anything is written."""
    if engine.is_embedded:
        return
    from celeryflow import brokers

    brokers.check_broker(engine.app)


def start_in(engine: CeleryEngine, backend: Any) -> Dispatch:
    """The engine's start transaction (flow RUNNING, first atoms queued), through ``backend``."""
    from celeryflow.runtime import control

    comp = engine.compile()
    runtime = getattr(engine, "_runtime", None)
    decide = runtime.decide if runtime is not None and comp.deciders else None
    return control.start(backend, comp, engine.flow_uuid, owner=getattr(engine, "_owner", None), decide=decide,
                         window=comp.window(engine.settings.dispatch_window))


def publish(engine: CeleryEngine, what: Dispatch) -> None:
    """Send what the start transaction queued (after the commit)."""
    from celeryflow.runtime import dispatch

    if engine.is_embedded:
        from celeryflow.runtime.embedded import ensure_worker

        ensure_worker(engine.app)
    dispatch.publish(engine.app, engine.compile(), what, engine.backend_key, engine.settings.chain_max)


def send_after_commit(engine: CeleryEngine, what: Dispatch,
                      send: Callable[[CeleryEngine, Dispatch], None] | None = None) -> None:
    """``send`` (default :func:`publish`), logging a failure (the conductor's sweep sends lost first messages)."""
    try:
        (send or publish)(engine, what)
    except Exception:
        LOG.exception("celeryflow: flow %s is committed but its first messages could not be sent; the "
                      "conductor's sweep will send them", engine.flow_uuid)
        raise


def persist_and_start(engine: CeleryEngine, writes: list[Callable[[Session], Any]]) -> None:
    """After the application's commit: write the recorded flow to its own logbook, and start it."""
    def txn(session: Session) -> None:
        for write in writes:
            write(session)

    try:
        engine.backend.run(txn)
        engine.start()
    except Exception:
        LOG.exception("celeryflow: flow %s could not be written/started after the commit", engine.flow_uuid)
        raise


__all__ = ["InSession", "Recorder", "build", "check_broker", "persist_and_start", "publish", "send_after_commit",
           "start_in"]
