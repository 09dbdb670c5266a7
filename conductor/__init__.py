"""The conductor process: the recovery sweep (and, with a jobboard, the job conductor).

* ``python -m conductor``: standalone loop.
* ``celery -A conductor beat``: the same sweep scheduled by Celery beat.

Thin on purpose: the logic lives in :mod:`celeryflow`.
"""

from __future__ import annotations

from celeryflow_tasks.app import app

celery = app

__all__ = ["app", "celery"]
