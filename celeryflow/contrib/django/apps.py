"""The Django app: ``INSTALLED_APPS += ["celeryflow.contrib.django"]``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class CeleryflowConfig(AppConfig):
    name = "celeryflow.contrib.django"
    label = "celeryflow"
    verbose_name = "celeryflow"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import task_postrun

        task_postrun.connect(_close_connections, weak=False, dispatch_uid="celeryflow-django-close-db")


def _close_connections(sender: Any = None, **kwargs: Any) -> None:
    """After each celeryflow task, close this thread's Django connections that are done
    (``CONN_MAX_AGE``), as Celery's Django fix-up does for worker processes: the embedded
    worker's threads would otherwise keep connections open (and block dropping a test database)."""
    from celeryflow.contrib.flower import TASK_NAMES

    if getattr(sender, "name", None) in TASK_NAMES:
        from django.db import close_old_connections

        close_old_connections()
