"""The embedded default: an in-process Celery with worker threads and an SQLite logbook.

With nothing configured, ``engines.run(flow)`` uses this app: kombu's
``memory://`` transport (polling every 2 ms, not the 1 s default; about 2 % of a core while idle), a Celery
worker running in a daemon thread with a thread pool, started once per process
and stopped at exit. It is a real Celery worker, not eager mode, so the code
path is the production one.

It has no conductor, so it sweeps the flows it runs itself: the conductor's sweep
(:class:`celeryflow.sweep.Sweeper`, the same code), in a daemon thread started with
the first flow, looking only at the flows this process started and dropping each as
it ends. A dispatch that committed but failed to publish is sent again once the flow
made no progress for ``heartbeat_timeout``; an atom whose heartbeat went stale is
reclaimed, as a conductor would.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Celery

from celeryflow.runtime.settings import Settings, default_logbook_url

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend
    from celeryflow.sweep import Sweeper

LOG = logging.getLogger(__name__)

SWEEP_THREAD = "celeryflow-embedded-sweep"
#: the embedded app's queue on the in-process memory transport
EMBEDDED_QUEUE = "celeryflow-embedded"
#: how often the sweep thread looks when it has no flow to sweep (it exits on stop at once)
IDLE_INTERVAL = 1.0

_lock = threading.Lock()
_app: Celery | None = None
_worker: Any = None
_thread: threading.Thread | None = None
_pid: int | None = None


def embedded_app() -> Celery:
    """The process-wide embedded app (created on first use)."""
    global _app
    with _lock:
        if _app is None:
            from celeryflow.install import CELERY_SETTINGS, install

            app = Celery("celeryflow-embedded", set_as_current=False)
            app.conf.update(
                broker_url="memory://",
                broker_transport=_transport_class(),
                broker_transport_options={"polling_interval": 0.002},
                # kombu's memory transport is one per process: a queue of its own keeps the embedded
                # worker and any other in-process worker on memory:// (a test's) off each other's messages
                task_default_queue=EMBEDDED_QUEUE,
                result_backend=None,
                task_ignore_result=True,
                worker_hijack_root_logger=False,
                worker_redirect_stdouts=False,
                broker_connection_retry_on_startup=True,
            )
            app.conf.update(CELERY_SETTINGS)
            install(app, backend=os.environ.get("CELERYFLOW_BACKEND") or default_logbook_url(), beat=False)
            _app = app
        return _app


#: the longest the embedded worker's consumer loop blocks between looks at its own state: it
#: bounds how long stopping the worker takes (Celery's loop drains for 2 s at a time)
DRAIN_SLICE = 0.05


def _transport_class() -> type:
    """kombu's in-memory transport, draining in slices of :data:`DRAIN_SLICE` seconds."""
    from kombu.transport import memory

    class EmbeddedTransport(memory.Transport):
        def drain_events(self, connection: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            # a caller that blocks without a timeout keeps blocking; the worker's loop passes 2 s
            timeout = kwargs.get("timeout")
            if timeout is not None:
                kwargs["timeout"] = min(timeout, DRAIN_SLICE)
            return super().drain_events(connection, **kwargs)

    return EmbeddedTransport


def is_embedded(app: Celery) -> bool:
    return app is _app and _app is not None


def ensure_worker(app: Celery) -> None:
    """Start the in-process worker thread once per process (again after a fork)."""
    global _worker, _thread, _pid
    with _lock:
        if _thread is not None and _thread.is_alive() and _pid == os.getpid():
            if _running(_worker):
                return
            # stopping: Celery's process-wide stop flag (worker.state.should_terminate, which
            # celery.contrib.testing's start_worker sets to stop its own worker) stops every worker here
            _thread.join(10)
        settings = Settings.from_sources(app.conf)
        from celery.worker import WorkController

        started = threading.Event()

        class _Controller(WorkController):
            def on_consumer_ready(self, consumer: Any) -> None:
                started.set()

        worker = _Controller(
            app=app,
            pool_cls=pool_class(app),
            concurrency=settings.embedded_concurrency,
            hostname=f"celeryflow-embedded@{os.getpid()}",
            loglevel=logging.WARNING,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=None,
            quiet=True,
        )
        thread = threading.Thread(target=worker.start, name="celeryflow-embedded-worker", daemon=True)
        thread.start()
        if not started.wait(30):
            raise RuntimeError("the embedded celeryflow worker did not start within 30 s")
        _worker, _thread, _pid = worker, thread, os.getpid()


def _running(worker: Any) -> bool:
    """Whether the worker's blueprint is still running (not closing or terminating)."""
    from celery import bootsteps

    return getattr(getattr(worker, "blueprint", None), "state", bootsteps.RUN) == bootsteps.RUN


def pool_class(app: Celery) -> type:
    """A thread pool whose threads see ``app`` as Celery's current app.

    The worker traces tasks through ``current_app``, which is thread-local; the
    embedded app is deliberately not made current process-wide (it would
    displace the user's own app), only in its own pool threads.
    """
    from concurrent.futures import ThreadPoolExecutor

    from celery.concurrency.thread import TaskPool

    class EmbeddedPool(TaskPool):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.executor.shutdown(wait=False)
            self.executor: ThreadPoolExecutor = ThreadPoolExecutor(
                max_workers=self.limit, thread_name_prefix="celeryflow-atom", initializer=app.set_current
            )

    return EmbeddedPool


# ---------------------------------------------------------------------- the in-process sweep


@dataclass
class _Swept:
    """The flows of one logbook that this process runs, and the sweeper that sweeps them."""

    sweeper: Sweeper
    #: flow -> how many times it was watched (a flow resumed while the sweep drops it stays)
    flows: dict[str, int] = field(default_factory=dict)

    def interval(self) -> float:
        # a sweep per quarter timeout: a lost message is re-sent within 1.25 timeouts
        settings = self.sweeper.settings
        return max(0.05, min(float(settings.sweep_interval), settings.heartbeat_timeout / 4))


_sweep_lock = threading.Lock()
_swept: dict[int, _Swept] = {}
_sweep_thread: threading.Thread | None = None
_sweep_stop: threading.Event | None = None
_sweep_pid: int | None = None


def watch(app: Celery, backend: Backend, flow_uuid: str) -> None:
    """Sweep ``flow_uuid`` (run by this process's embedded worker) until it ends."""
    global _sweep_thread, _sweep_stop, _sweep_pid
    from celeryflow.sweep import Sweeper

    with _sweep_lock:
        if _sweep_pid != os.getpid():  # a forked child runs none of its parent's flows
            _swept.clear()
            _sweep_thread, _sweep_pid = None, os.getpid()
        entry = _swept.get(id(backend))
        if entry is None or entry.sweeper.backend is not backend:
            new = _Swept(Sweeper(app, backend=backend, name=f"embedded-sweep:{socket.gethostname()}:{os.getpid()}"))
            new.sweeper.only = lambda: _flows_of(new)
            entry = _swept[id(backend)] = new
        entry.flows[flow_uuid] = entry.flows.get(flow_uuid, 0) + 1
        if _sweep_thread is None or not _sweep_thread.is_alive():
            # a daemon thread (never holds up interpreter exit), started on first use: no start-up cost
            _sweep_stop = threading.Event()
            _sweep_thread = threading.Thread(target=_sweep_loop, args=(_sweep_stop,), name=SWEEP_THREAD, daemon=True)
            _sweep_thread.start()


def unwatch(backend: Backend, flow_uuid: str) -> None:
    """Stop sweeping ``flow_uuid`` (it ended)."""
    with _sweep_lock:
        entry = _swept.get(id(backend))
        if entry is not None and entry.sweeper.backend is backend:
            entry.flows.pop(flow_uuid, None)


def _flows_of(entry: _Swept) -> dict[str, int]:
    with _sweep_lock:
        return dict(entry.flows)


def _sweep_loop(stop: threading.Event) -> None:
    while not stop.is_set():
        with _sweep_lock:
            for key in [k for k, e in _swept.items() if not e.flows]:
                del _swept[key]  # nothing of that logbook runs here any more
            entries = list(_swept.values())
        for entry in entries:
            if stop.is_set():
                return
            if entry.sweeper.backend.closed:
                with _sweep_lock:
                    _swept.pop(id(entry.sweeper.backend), None)
                continue
            try:
                _forget_ended(entry)
                entry.sweeper.sweep()
            except Exception:  # the loop never dies (the sweep reports outages itself)
                LOG.exception("embedded sweep failed")
        stop.wait(min((e.interval() for e in entries), default=IDLE_INTERVAL))


def _forget_ended(entry: _Swept) -> None:
    """Drop the flows that ended (or were suspended, or deleted): nothing to sweep any more."""
    from sqlalchemy import select

    from celeryflow.persistence.tables import FlowRow
    from celeryflow.runtime.reclaim import ACTIVE

    flows = _flows_of(entry)
    if not flows:
        return

    def read(conn: Any) -> set[str]:
        rows = conn.execute(select(FlowRow.uuid, FlowRow.state).where(FlowRow.uuid.in_(list(flows))))
        return {uuid for uuid, state in rows if state in ACTIVE}

    active = entry.sweeper.backend.run_core(read, readonly=True, attempts=1)
    with _sweep_lock:
        for uuid, watched in flows.items():
            if uuid not in active and entry.flows.get(uuid) == watched:
                del entry.flows[uuid]


def stop_sweeping(timeout: float = 2.0) -> None:
    """Stop the in-process sweep (at exit, or in tests); the next embedded flow starts it again."""
    global _sweep_thread, _sweep_stop
    with _sweep_lock:
        thread, stop, _sweep_thread, _sweep_stop = _sweep_thread, _sweep_stop, None, None
    if stop is not None:
        stop.set()
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout)


def stop_worker() -> None:
    """Stop the in-process worker (at exit, or in tests)."""
    global _worker, _thread
    stop_sweeping()
    with _lock:
        worker, thread = _worker, _thread
        _worker = _thread = None
    if worker is None or thread is None:
        return
    try:
        worker.stop(in_sighandler=False, exitcode=0)
    except Exception:  # pragma: no cover - best effort at interpreter exit
        LOG.debug("embedded worker stop failed", exc_info=True)
    thread.join(10)


atexit.register(stop_worker)
