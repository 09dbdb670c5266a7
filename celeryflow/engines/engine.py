"""The Celery engine: persist first, dispatch as canvas, follow from the logbook.

How followed events become notifications is in ``notifications`` (its names are re-exported here).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import uuid as uuidlib
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

from celeryflow import brokers, compiler, serialization, states
from celeryflow.engines import options as engine_options
from celeryflow.engines.atom_details import atom_versions
from celeryflow.engines.books import fill_book
from celeryflow.engines.notifications import EVENT_UPDATE_PROGRESS as EVENT_UPDATE_PROGRESS  # re-exported
from celeryflow.engines.notifications import NOTIFIED_FLOW_STATES as NOTIFIED_FLOW_STATES  # re-exported
from celeryflow.engines.notifications import EventRelay
from celeryflow.engines.storage import Storage
from celeryflow.engines.waiter import Follower, last_event_id
from celeryflow.exceptions import ConfigurationError, MissingDependencies
from celeryflow.runtime import adopt, context, control, dispatch, localbus
from celeryflow.runtime import backends as backend_keys
from celeryflow.runtime.settings import Settings
from celeryflow.types.failure import Failure
from celeryflow.types.notifier import Notifier

if TYPE_CHECKING:
    from celery import Celery

    from celeryflow.compiler import Compilation
    from celeryflow.flow import Flow
    from celeryflow.persistence.backends.base import Backend
    from celeryflow.persistence.tables import EventRow

LOG = logging.getLogger(__name__)


def resolve_app(app: Celery | None) -> Celery:
    if app is not None:
        return app
    from celeryflow.install import default_app

    return default_app()


def resolve_backend(backend: Any, app: Celery) -> Backend:
    from celeryflow.persistence.backends import fetch

    if backend is None:
        backend = app.conf.get("celeryflow_backend") or Settings.for_app(app).backend
    if backend is None:
        raise ConfigurationError(
            "No logbook configured: pass backend='postgresql://...' or set CELERYFLOW_BACKEND, "
            "or call celeryflow.install(app, backend=...)"
        )
    return fetch(backend)


class CeleryEngine:
    """Runs one flow on Celery; its state lives in the logbook.

    Build it with :func:`celeryflow.engines.load` (or ``load_from_factory`` /
    ``load_from_detail``), then ``run()``. ``notifier`` gets flow events and
    ``atom_notifier`` atom events, in this process, whatever worker ran the atoms.
    """

    def __init__(
        self,
        flow: Flow | None,
        *,
        store: Mapping[str, Any] | None = None,
        app: Celery | None = None,
        backend: Any = None,
        book: Any = None,
        flow_uuid: str | None = None,
        factory_spec: dict[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        into_detail: Any = None,
        engine: str = "celery",
    ) -> None:
        self.app = resolve_app(app)
        self.backend: Backend = resolve_backend(backend, self.app)
        self.settings = Settings.for_app(self.app)
        self.options = dict(options or {})
        #: ``engine="serial"``, ``max_workers=``, ``executor=``: see celeryflow/engines/options.py
        self._max_in_flight = engine_options.max_in_flight(engine, self.options)
        self.notifier = Notifier()
        self.atom_notifier = Notifier()
        self._flow = flow
        self._store = dict(store or {})
        self._book = book
        self._factory_spec = factory_spec
        # a FlowDetail the caller made (and maybe saved) to run ``flow`` into: runtime/adopt.py
        self._into_detail = into_detail
        # the caller's FlowDetail object (into_detail, or the one load_from_detail was given): kept current
        self._caller_detail = into_detail
        self._compilation: Compilation | None = None
        self._runtime: context.FlowRuntime | None = None
        self._flow_uuid = flow_uuid
        self._owner = f"engine:{socket.gethostname()}:{os.getpid()}:{uuidlib.uuid4().hex[:8]}"
        self._stats: dict[str, Any] = {}
        #: the flow's logbook events as notifications (it remembers the states notified)
        self._relay = EventRelay()
        if flow_uuid is not None:
            self._attach(flow_uuid)

    # ------------------------------------------------------------------ set-up

    def _attach(self, flow_uuid: str) -> None:
        runtime = context.runtime_for(self.backend, flow_uuid)
        self._runtime = runtime
        self._compilation = runtime.comp

    @property
    def backend_key(self) -> str:
        """The logbook's key in this engine's messages (its stored id: read once, on first publish)."""
        return backend_keys.remember(self.backend)

    @property
    def is_embedded(self) -> bool:
        from celeryflow.runtime.embedded import is_embedded

        return is_embedded(self.app)

    def compile(self) -> Compilation:
        """Compile the flow (pure; cached)."""
        if self._compilation is None:
            assert self._flow is not None
            self._compilation = compiler.compile(
                self._flow, celery_defaults=self.options.get("celery_options"),
                revert_celery_defaults=self.options.get("revert_celery_options"),
            )
            if self._max_in_flight is not None:
                self._compilation = dataclasses.replace(self._compilation, max_in_flight=self._max_in_flight)
        return self._compilation

    def validate(self) -> None:
        """Raise MissingDependencies if some atom's requirements are provided by nothing."""
        comp = self.compile()
        available = set(self._store)
        if self._flow_uuid is not None:
            available |= set(self.storage.store())
        missing = comp.missing(available)
        if missing:
            raise MissingDependencies(comp.flow_name, missing)

    def prepare(self, also: Callable[[Any, str], None] | None = None) -> None:
        """Persist the flow, its spec and store in one transaction (nothing is sent yet).

        Args:
            also: ``also(session, flow_uuid)`` runs inside that same transaction (the SQL
                jobboard's ``post_flow`` posts its job this way: flow and job commit together).
        """
        if self._flow_uuid is not None:
            return
        comp = self.compile()
        assert self._flow is not None
        from celeryflow import spec as specmod

        strict = not self.is_embedded
        flow_spec = None
        if self._factory_spec is None or strict is False:
            try:
                flow_spec = specmod.flow_to_spec(self._flow, strict=strict and self._factory_spec is None)
            except Exception:
                if self._factory_spec is None:
                    raise
        full_spec = {
            "version": context.SPEC_VERSION,
            "flow": flow_spec,
            "factory": self._factory_spec,
            "compilation": comp.to_dict(),
        }
        for key, value in self._store.items():
            serialization.dumps_value(value, f"store value {key!r}")
        versions = atom_versions(self._flow)
        into = self._into_detail
        flow_uuid = str(into.uuid) if into is not None else str(uuidlib.uuid4())
        book_uuid, book_name = _book_identity(self._book, comp.flow_name)

        def txn(session: Any) -> None:
            args: dict[str, Any] = {
                "name": comp.flow_name, "store": self._store, "meta": {"options": _jsonable(self.options)},
                "logbook_uuid": book_uuid, "logbook_name": book_name,
            }
            if into is not None:
                args = adopt.create_args(session, into, **{k: v for k, v in args.items() if k != "name"})
            created = control.create_flow(
                session, flow_uuid=flow_uuid, comp=comp, spec=full_spec, owner=self._owner, versions=versions,
                namespace=self.settings.namespace, **args,
            )
            # not created: this transaction committed before (then ``also`` did too)
            if created and also is not None:
                also(session, flow_uuid)

        self.backend.run(txn)
        self._flow_uuid = flow_uuid
        self._runtime = context.FlowRuntime(flow_uuid, comp, full_spec)
        self._runtime.atoms = compiler.atoms_by_name(self._flow)
        self._runtime.deciders = list(compiler.deciders(self._flow))
        context.register_live(self._runtime)
        fill_book(self._book, self.backend, flow_uuid, self._caller_detail)

    @property
    def flow_uuid(self) -> str:
        self.prepare()
        assert self._flow_uuid is not None
        return self._flow_uuid

    @property
    def storage(self) -> Storage:
        return Storage(self.backend, self.flow_uuid, self.compile())

    @property
    def flow_detail(self) -> Any:
        return self.backend.get_flow_details(self.flow_uuid)

    @property
    def statistics(self) -> dict[str, Any]:
        return dict(self._stats)

    # ------------------------------------------------------------------ running

    def _publish(self, what: control.Dispatch) -> None:
        """Publish what a committed transaction queued."""
        if self.is_embedded:
            from celeryflow.runtime.embedded import watch

            # the embedded default's own sweep re-drives the flow if a message is lost
            watch(self.app, self.backend, self.flow_uuid)
        if not what:
            return
        try:
            dispatch.publish(self.app, self.compile(), what, self.backend_key, self.settings.chain_max)
        except Exception:
            if not self.is_embedded:
                raise
            # Committed, not sent: the atoms stay queued and the embedded sweep sends them again.
            LOG.warning("could not publish the atoms of flow %s; the embedded sweep will send them again",
                        self.flow_uuid, exc_info=True)

    def start(self, store: Mapping[str, Any] | None = None) -> str:
        """Persist (if needed), queue what is ready and publish it; do not wait. Returns the flow id."""
        started = time.monotonic()
        self._ready()
        return self._launch(store, started)

    def _ready(self) -> int:
        """Check the broker, validate and persist; return the last event id before this run."""
        # The broker is checked before anything is written: a submit against a dead
        # broker fails at the caller and leaves nothing half-done in the logbook.
        self._check_broker()
        if self._flow_uuid is not None:
            return last_event_id(self.backend, self._flow_uuid)
        self.validate()
        self.prepare()
        return 0

    def _launch(self, store: Mapping[str, Any] | None = None, started: float | None = None) -> str:
        started = time.monotonic() if started is None else started
        if self.is_embedded:
            from celeryflow.runtime.embedded import ensure_worker

            ensure_worker(self.app)
            if self._runtime is not None and self._runtime.comp.order:
                # The atoms run in this process: a flow whose spec names something no longer
                # registered fails here (NotRegistered), before anything is sent, untouched.
                self._runtime.atom(self._runtime.comp.order[0])
        assert self._runtime is not None
        if self._flow is not None:
            context.register_live(self._runtime)  # again: dropped when it was last seen finishing
        decide = self._runtime.decide if any(a.deciders for a in self.compile().atoms.values()) else None
        comp = self.compile()
        what = control.start(self.backend, comp, self.flow_uuid, store_updates=store,
                             owner=self._owner, decide=decide, window=comp.window(self.settings.dispatch_window),
                             heartbeat_timeout=self.settings.heartbeat_timeout)
        self._stats["start_seconds"] = time.monotonic() - started
        self._publish(what)
        return self.flow_uuid

    def _check_broker(self) -> None:
        if self.is_embedded:
            return
        # A transport that cannot be imported is reported as such (TransportNotInstalled),
        # not as an unreachable broker: see celeryflow/brokers.py.
        brokers.check_broker(self.app)

    def run(self, timeout: float | None = None) -> None:
        """Run the flow until it is finished or suspended.

        Raises:
            The original exception of the failed atom (or WrappedFailure for several) when the
            flow ended REVERTED or FAILURE; Timeout if ``timeout`` passed first.
        """
        began = time.monotonic()
        after = self._ready()
        # held before the first atom is sent: this process's workers run an atom's code only
        # after its RUNNING notification was delivered here (TaskFlow's order)
        with localbus.tapping(self.flow_uuid) as tap:
            self._launch()
            try:
                state = Follower(self.backend, self.flow_uuid, after).follow(self._on_event, timeout, tap=tap)
            finally:
                self.fill_book()
        self._ended(state, began)
        self.raise_for_state(state)

    def fill_book(self) -> None:
        """Bring the caller's ``book=`` / FlowDetail objects up to date, as TaskFlow's engine does."""
        fill_book(self._book, self.backend, self.flow_uuid, self._caller_detail)

    def _ended(self, state: str, began: float) -> None:
        if self.is_embedded:
            from celeryflow.runtime.embedded import unwatch

            unwatch(self.backend, self.flow_uuid)
        if state in states.FLOW_TERMINAL:
            context.finished_live(self.flow_uuid)
        self._stats["seconds"] = time.monotonic() - began
        self._stats["state"] = state

    def run_iter(self, timeout: float | None = None) -> Generator[str, Any, None]:
        """Run the flow, yielding the engine's states as TaskFlow's ``run_iter()`` does.

        See :mod:`celeryflow.engines.iteration` for what each yield means; ``send(True)``
        suspends the flow, ``close()`` suspends it and waits for the atoms already running.
        """
        from celeryflow.engines.iteration import run_iter

        return run_iter(self, timeout)

    def run_async(self) -> str:
        """Start without waiting (what ``celeryflow.submit`` does)."""
        return self.start()

    def raise_for_state(self, state: str) -> None:
        if state not in (states.REVERTED, states.FAILURE):
            return
        storage = self.storage
        revert_failures = storage.get_revert_failures()
        if state == states.FAILURE and revert_failures:
            Failure.reraise_if_any(list(revert_failures.values()))
        Failure.reraise_if_any(list(storage.get_flow_failures().values()))

    def suspend(self) -> None:
        """Stop starting atoms; running ones finish; the flow ends SUSPENDED."""
        control.suspend(self.backend, self.compile(), self.flow_uuid)

    def reset(self) -> None:
        """Forget all outcomes: the flow and its atoms return to PENDING."""
        control.reset(self.backend, self.flow_uuid)

    def revert(self) -> None:
        """Compensate this flow now (finished, suspended or stuck)."""
        what = control.request_revert(self.backend, self.compile(), self.flow_uuid, owner=self._owner)
        self._publish(what)

    # ------------------------------------------------------------------ events

    def _on_event(self, row: EventRow) -> None:
        self._relay.deliver(self, row)


def _book_identity(book: Any, flow_name: str) -> tuple[str | None, str | None]:
    if book is None:
        return None, None
    if isinstance(book, str):
        return book, flow_name
    return str(book.uuid), str(getattr(book, "name", flow_name))


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in options.items():
        try:
            out[key] = serialization.roundtrip(value)
        except Exception:
            out[key] = repr(value)
    return out
