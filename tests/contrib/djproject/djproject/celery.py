"""The project's Celery app, for real workers: ``celery -A djproject worker``.

Not used by the tests (they run flows on the embedded worker); it shows the wiring:
the worker gets the same logbook URL and celeryflow settings as the web processes.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproject.settings")

app = Celery("djproject")
app.config_from_object("django.conf:settings", namespace="CELERY")

from celeryflow.contrib.django import install  # noqa: E402

install(app)
