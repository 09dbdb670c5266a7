"""Micro-benchmark: ``Settings.from_sources(app.conf)`` against the cached ``Settings.for_app(app)``.

``python -m bench.settings_micro``: microseconds per call (best of 5) on the stock app
(celeryflow_tasks), a host app with celeryflow installed, and a Django-style app configured
from an object with ``namespace="CELERY"``; ``miss`` is a read right after a conf change.
"""

from __future__ import annotations

import tempfile
import timeit
from pathlib import Path
from typing import Any

from celery import Celery

import celeryflow
from celeryflow.runtime.settings import Settings
from celeryflow_tasks.app import make_app

N = 20000


def _apps(url: str) -> dict[str, Celery]:
    host = Celery("host", broker="memory://", set_as_current=False)
    host.conf.update(task_default_queue="hostq")
    celeryflow.install(host, backend=url, heartbeat_timeout=30)

    class Config:
        CELERY_TASK_DEFAULT_QUEUE = "q"
        CELERY_CELERYFLOW_NAMESPACE = "ns"

    django = Celery("django", broker="memory://", set_as_current=False)
    django.config_from_object(Config, namespace="CELERY")
    celeryflow.install(django, backend=url)
    return {"stock": make_app(), "host": host, "django-ns": django}


def _per_call(fn: Any, number: int = N) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'logbook.sqlite'}"
    for label, app in _apps(url).items():
        conf = app.conf
        full = _per_call(lambda conf=conf: Settings.from_sources(conf))
        cached = _per_call(lambda app=app: Settings.for_app(app))

        def miss(app: Celery = app) -> None:
            conf = app.conf
            conf.celeryflow_chain_max = 17 - (conf.get("celeryflow_chain_max") or 8)  # 8, 9, 8...
            Settings.for_app(app)

        print(f"{label:10s} from_sources {full:7.1f} us   for_app hit {cached:6.1f} us   "
              f"for_app miss {_per_call(miss, 2000):7.1f} us")


if __name__ == "__main__":
    main()
