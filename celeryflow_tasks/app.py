"""Building the stock Celery app from ``CELERYFLOW_*`` environment variables."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from celeryflow.install import CELERY_SETTINGS, install

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def make_app(name: str = "celeryflow", **settings: Any) -> Celery:
    """A Celery app configured from the environment, with celeryflow installed."""
    app = Celery(name, set_as_current=False)
    app.conf.broker_url = os.environ.get("CELERYFLOW_BROKER_URL", DEFAULT_BROKER)
    app.conf.result_backend = os.environ.get("CELERYFLOW_RESULT_BACKEND") or None
    app.conf.task_ignore_result = not app.conf.result_backend
    app.conf.broker_connection_retry_on_startup = True
    # Flower and `celery events` need task events.
    app.conf.worker_send_task_events = True
    app.conf.task_send_sent_event = True
    # celeryflow's own app: JSON only, late acks, prefetch 1 for every task it has
    app.conf.update(CELERY_SETTINGS)
    if os.environ.get("CELERYFLOW_NAMESPACE"):
        # the deployment is fixed when the app is built, like its broker and logbook
        settings.setdefault("namespace", os.environ["CELERYFLOW_NAMESPACE"])
    install(app, backend=os.environ.get("CELERYFLOW_BACKEND") or None, **settings)
    _bound_decompression_in_workers(app)
    return app


def _bound_decompression_in_workers(app: Celery) -> None:
    """A worker of this app expands compressed messages to at most CELERYFLOW_MAX_MESSAGE_BYTES.

    kombu decompresses before any task code runs (celeryflow/decompression.py): bounded in
    the worker's main process at start, inherited by its pool children.
    """
    from celery import signals

    def on_worker_init(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            from celeryflow import decompression

            decompression.bound()

    signals.worker_init.connect(on_worker_init, weak=False)


app = make_app()
