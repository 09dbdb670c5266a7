"""TaskFlow's worker-based engine on Celery: ``engine="worker-based"`` and :class:`Worker`.

A TaskFlow program that runs its atoms on remote workers passes the broker and exchange to
both sides::

    worker.Worker(url="amqp://...", exchange="flows", topic="w1", tasks=["mymod:MyTask"]).run()
    engines.load(flow, engine="worker-based", url="amqp://...", exchange="flows", topics=["w1"])

Here both map onto one Celery app on that broker (:func:`app_for`): ``url`` (or TaskFlow's
``transport`` / ``transport_options``, e.g. ``transport="memory"``) is the Celery broker,
and ``exchange`` names the Celery queue the flow's atoms are sent to, which every
:class:`Worker` of that exchange consumes. A :class:`Worker` is a Celery worker (a thread
pool of ``threads_count`` threads) that imports the modules of its ``tasks`` first, as
``CELERYFLOW_IMPORTS`` does. ``topic`` names the worker (its Celery hostname); ``topics``
on the engine side are accepted and not needed: Celery's queue hands each atom to whichever
worker of the exchange is free (TaskFlow's engine picks a worker advertising the task).
The logbook is ``backend=`` (or ``CELERYFLOW_BACKEND``, else the embedded SQLite file):
workers and callers must share it. The same flow runs unchanged on ``celery -A
celeryflow_tasks worker`` processes with ``CELERYFLOW_BROKER_URL`` set to that broker and
``CELERYFLOW_IMPORTS`` to those modules.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celeryflow.exceptions import ConfigurationError

if TYPE_CHECKING:
    from celery import Celery

#: TaskFlow's default exchange (taskflow/engines/worker_based/engine.py)
DEFAULT_EXCHANGE = "default"
#: TaskFlow's worker-based engine options that name the broker; the rest are accepted and unused
BROKER_OPTIONS = ("url", "transport", "transport_options", "exchange")
UNUSED_OPTIONS = ("topics", "retry_options", "transition_timeout", "worker_expiry")

_lock = threading.Lock()
_apps: dict[tuple[str, str, str | None, str], Celery] = {}


def broker_url(url: str | None = None, transport: str | None = None) -> str:
    """The Celery broker URL of TaskFlow's ``url`` / ``transport`` options."""
    if url:
        return url
    if transport:
        return f"{transport}://"
    import os

    env = os.environ.get("CELERYFLOW_BROKER_URL")
    if env:
        return env
    raise ConfigurationError(
        "engine='worker-based' needs a broker: pass url='redis://...' or 'amqp://...' (or transport='memory' "
        "for workers in this process), or set CELERYFLOW_BROKER_URL"
    )


def app_for(url: str | None = None, transport: str | None = None, transport_options: Mapping[str, Any] | None = None,
            exchange: str | None = None, backend: Any = None) -> Celery:
    """The Celery app (one per broker, exchange and logbook in this process) of a worker-based set-up."""
    import importlib

    from celery import Celery

    installmod = importlib.import_module("celeryflow.install")  # the module (celeryflow.install is the function)

    broker = broker_url(url, transport)
    queue = exchange or DEFAULT_EXCHANGE
    logbook = backend if backend is None or isinstance(backend, str) else str(
        getattr(backend, "url_string", None) or backend.url)
    options = dict(transport_options or {})
    key = (broker, queue, logbook, repr(sorted(options.items())))
    with _lock:
        app = _apps.get(key)
        if app is None:
            app = Celery(f"celeryflow-wbe-{queue}", set_as_current=False)
            app.conf.update(broker_url=broker, broker_transport_options=options, result_backend=None,
                            task_ignore_result=True, task_default_queue=queue, worker_hijack_root_logger=False,
                            worker_redirect_stdouts=False, broker_connection_retry_on_startup=True)
            app.conf.update(installmod.CELERY_SETTINGS)
            previous = installmod.installed_app()
            installmod.install(app, backend=logbook, beat=False)
            setattr(installmod, "_installed", previous)  # noqa: B010 - not the default for engines.load(app=None)
            _apps[key] = app
        return app


def split_options(options: dict[str, Any]) -> dict[str, Any]:
    """Take TaskFlow's worker-based options out of ``options``; return the broker ones."""
    broker = {name: options.pop(name) for name in BROKER_OPTIONS if name in options}
    for name in UNUSED_OPTIONS:
        options.pop(name, None)
    return broker


from celeryflow.engines.worker_based.worker import Worker  # noqa: E402  (Worker uses app_for)

__all__ = ["DEFAULT_EXCHANGE", "Worker", "app_for", "broker_url", "split_options"]
