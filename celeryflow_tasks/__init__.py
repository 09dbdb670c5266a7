"""The stock worker app: ``celery -A celeryflow_tasks worker``.

Configured from the environment:

* ``CELERYFLOW_BROKER_URL`` (default ``redis://127.0.0.1:6379/0``)
* ``CELERYFLOW_RESULT_BACKEND`` (default: none; celeryflow needs no result backend)
* ``CELERYFLOW_BACKEND`` (the logbook URL; default the embedded SQLite file)
* ``CELERYFLOW_IMPORTS`` (comma-separated modules where your atoms and factories live)
* any other ``CELERYFLOW_*`` setting (docs/configuration.md)

Thin on purpose: the logic lives in :mod:`celeryflow`.
"""

from __future__ import annotations

from celeryflow_tasks.app import app, make_app

celery = app

__all__ = ["app", "celery", "make_app"]
