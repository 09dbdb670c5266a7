"""The embedded default: an in-process Celery with worker threads and an SQLite logbook.

With nothing configured, ``engines.run(flow)`` uses this app: kombu's
``memory://`` transport (polling every 2 ms, not the 1 s default; about 2 % of a core while idle), a Celery
worker running in a daemon thread with a thread pool, started once per process
and stopped at exit. It is a real Celery worker, not eager mode, so the code
path is the production one.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any

from celery import Celery

from celeryflow.runtime.settings import Settings, default_logbook_url

LOG = logging.getLogger(__name__)

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
                broker_transport_options={"polling_interval": 0.002},
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


def is_embedded(app: Celery) -> bool:
    return app is _app and _app is not None


def ensure_worker(app: Celery) -> None:
    """Start the in-process worker thread once per process (again after a fork)."""
    global _worker, _thread, _pid
    with _lock:
        if _thread is not None and _thread.is_alive() and _pid == os.getpid():
            return
        settings = Settings.from_sources(app.conf)
        from celery.worker import WorkController

        started = threading.Event()

        class _Controller(WorkController):
            def on_consumer_ready(self, consumer: Any) -> None:
                started.set()

        worker = _Controller(
            app=app,
            pool_cls=_pool_class(app),
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


def _pool_class(app: Celery) -> type:
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


def stop_worker() -> None:
    """Stop the in-process worker (at exit, or in tests)."""
    global _worker, _thread
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
