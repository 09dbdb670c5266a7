"""TaskFlow's ``engines.worker_based.worker.Worker`` as a Celery worker (see the package docs)."""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from celeryflow.exceptions import ConfigurationError

LOG = logging.getLogger(__name__)


def task_modules(tasks: Iterable[Any]) -> list[str]:
    """The modules TaskFlow's ``tasks=[...]`` name: ``"mod:Class"``, ``"mod.Class"``, ``"mod"`` or a class."""
    modules: list[str] = []
    for entry in tasks:
        if isinstance(entry, str):
            name = entry.split(":", 1)[0] if ":" in entry else entry
            try:
                importlib.import_module(name)
            except ImportError:
                if "." not in name:
                    raise ConfigurationError(f"Worker task {entry!r}: no module {name!r} to import") from None
                name = name.rsplit(".", 1)[0]
        elif isinstance(entry, type):
            name = entry.__module__
        else:
            raise ConfigurationError(f"Worker task {entry!r}: give 'module:Class', 'module.Class' or the class")
        if name == "__main__":
            raise ConfigurationError(
                f"Worker task {entry!r} is defined in __main__: move it to a module the worker can import"
            )
        if name not in modules:
            modules.append(name)
    return modules


class Worker:
    """A Celery worker on the broker of a TaskFlow worker-based set-up.

    Args:
        exchange: the exchange: the Celery queue the worker consumes (the engine's ``exchange``).
        topic: this worker's name (its Celery hostname is ``<topic>@<host>``).
        tasks: the task classes (or ``"module:Class"`` strings) it runs: their modules are
            imported before the worker starts.
        executor: an executor object whose ``max_workers`` sets the thread count.
        threads_count: threads running atoms (default: the executor's, else 2).
        url, transport, transport_options: the broker (see :func:`app_for`).
        retry_options: accepted for TaskFlow compatibility (Celery reconnects by itself).
        backend: the logbook (default ``CELERYFLOW_BACKEND``, else the embedded SQLite file).
    """

    def __init__(self, exchange: str, topic: str, tasks: Iterable[Any], executor: Any = None,
                 threads_count: int | None = None, url: str | None = None, transport: str | None = None,
                 transport_options: dict[str, Any] | None = None, retry_options: Any = None,
                 backend: Any = None) -> None:
        from celeryflow import registry
        from celeryflow.engines.worker_based import app_for

        self.topic = topic
        self.exchange = exchange
        self.modules = task_modules(tasks)
        for module in self.modules:
            registry.allow_module(module)
        self.app = app_for(url, transport, transport_options, exchange, backend)
        count = threads_count or getattr(executor, "max_workers", None) or getattr(executor, "_max_workers", None)
        self.threads_count = int(count or 2)
        self._ready = threading.Event()
        self._controller: Any = None

    @property
    def banner(self) -> str:
        return (f"celeryflow worker {self.topic!r}: exchange (queue) {self.exchange!r} on "
                f"{self.app.conf.broker_url}, {self.threads_count} threads, modules {', '.join(self.modules)}")

    def run(self, display_banner: bool = True, banner_writer: Callable[[str], Any] | None = None) -> None:
        """Run the worker in this thread until :meth:`stop`."""
        from celery.worker import WorkController

        from celeryflow.runtime.embedded import pool_class

        if display_banner:
            (banner_writer or LOG.info)(self.banner)
        ready = self._ready

        class _Controller(WorkController):
            def on_consumer_ready(self, consumer: Any) -> None:
                ready.set()

        self._controller = _Controller(
            app=self.app, pool_cls=pool_class(self.app), concurrency=self.threads_count,
            hostname=f"{self.topic}@{os.uname().nodename}", loglevel=logging.WARNING, without_heartbeat=True,
            without_mingle=True, without_gossip=True, ready_callback=None, quiet=True,
        )
        self._controller.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the worker consumes its queue (TaskFlow's ``wait()``)."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        """Stop the worker (atoms already running finish)."""
        controller = self._controller
        if controller is not None:
            controller.stop(in_sighandler=False, exitcode=0)
