"""Deployments for the drop-in tests: real ``celery worker`` processes, each deployment
on its own Redis db, sharing (or not) one PostgreSQL schema as their logbook."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.fixtures_services import _claim_redis_db
from tests.support.procs import ProcessGroup, celery_worker_cmd
from tests.support.remote import make_remote_app


@dataclass
class Deployment:
    """One deployment: its broker, its settings, its stock app (built for the test process)."""

    name: str
    env: dict[str, str]
    app: Any
    workers: list[str] = field(default_factory=list)


def start_worker(group: ProcessGroup, deployment: Deployment, worker: str,
                 env: dict[str, str] | None = None, queues: list[str] | None = None) -> None:
    """Start one ``celery -A celeryflow_tasks worker`` of ``deployment`` and wait until it is ready."""
    group.start(worker, celery_worker_cmd(hostname=f"{worker}@%h", concurrency=1, queues=queues),
                env={**deployment.env, **(env or {})})
    group.wait_for_log(worker, r"ready\.", timeout=60)
    deployment.workers.append(worker)


@contextlib.contextmanager
def deployment(name: str, logbook: str, **settings: str) -> Iterator[Deployment]:
    """A deployment on a private Redis db with ``logbook``; ``settings``: more CELERYFLOW_* variables."""
    for db in _claim_redis_db(f"deploy-{name}"):
        env = {
            "CELERYFLOW_BROKER_URL": f"redis://127.0.0.1:6379/{db}",
            "CELERYFLOW_BACKEND": logbook,
            "CELERYFLOW_IMPORTS": "tests.deploy.atoms",
            **{f"CELERYFLOW_{k.upper()}": v for k, v in settings.items()},
        }
        yield Deployment(name, env, make_remote_app(env, f"celeryflow-deploy-{name}"))
