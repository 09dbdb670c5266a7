"""Two separate ``celery -A celeryflow_tasks worker`` processes on a private Redis db, with
the logbook in a fresh PostgreSQL schema: the "remote" setup the scenario suites share."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures_db import postgres_database
from tests.fixtures_services import _claim_redis_db
from tests.support.procs import ProcessGroup, celery_worker_cmd

WORKERS = ("worker1", "worker2")


@dataclass
class RemoteWorkers:
    logbook: str
    app: Any
    env: dict[str, str]
    group: ProcessGroup


def make_remote_app(env: dict[str, str], name: str) -> Any:
    """Build the stock app under ``env`` without leaving it installed as the process default."""
    install_module: Any = sys.modules["celeryflow.install"]
    previous = install_module._installed
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from celeryflow_tasks.app import make_app

        return make_app(name)
    finally:
        install_module._installed = previous
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def remote_workers(tmp: Path, imports: str, label: str) -> Iterator[RemoteWorkers]:
    """Start the workers (importing ``imports``), wait until they are ready, stop them by pid after."""
    for db in _claim_redis_db(label):
        with postgres_database() as logbook:
            env = {
                "CELERYFLOW_BROKER_URL": f"redis://127.0.0.1:6379/{db}",
                "CELERYFLOW_BACKEND": logbook,
                "CELERYFLOW_IMPORTS": imports,
            }
            with ProcessGroup(tmp, env=env) as group:
                for name in WORKERS:
                    group.start(name, celery_worker_cmd(hostname=f"{name}@%h", concurrency=2))
                for name in WORKERS:
                    group.wait_for_log(name, r"ready\.", timeout=60)
                yield RemoteWorkers(logbook, make_remote_app(env, f"celeryflow-{label}"), env, group)
