"""Run the same scenarios (a) on the embedded default and (b) on the stock app with two
separate ``celery worker`` processes on Redis, with the logbook in PostgreSQL."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import celeryflow.install  # noqa: F401  (the module; the package attribute is the function)
from celeryflow import engines
from tests.fixtures_db import postgres_database
from tests.fixtures_services import _claim_redis_db
from tests.support.procs import ProcessGroup, celery_worker_cmd, wait_for


@dataclass
class FlowEnv:
    """Where a scenario runs: ``app`` None means the embedded default."""

    kind: str
    backend: str
    app: Any
    tmp: Path

    def trace(self) -> str:
        return str(self.tmp / f"trace-{uuid.uuid4().hex[:8]}.log")

    def load(self, flow: Any, store: dict[str, Any] | None = None, **kw: Any) -> engines.CeleryEngine:
        return engines.load(flow, store=store, app=self.app, backend=self.backend, **kw)

    def run(self, flow: Any, store: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return engines.run(flow, store=store, app=self.app, backend=self.backend, **kw)


@pytest.fixture(scope="module")
def remote_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowEnv]:
    tmp = tmp_path_factory.mktemp("remote")
    for db in _claim_redis_db("engine-remote"):
        broker = f"redis://127.0.0.1:6379/{db}"
        with postgres_database() as logbook:
            env = {
                "CELERYFLOW_BROKER_URL": broker,
                "CELERYFLOW_BACKEND": logbook,
                "CELERYFLOW_IMPORTS": "tests.engine.atoms",
            }
            with ProcessGroup(tmp, env=env) as group:
                for name in ("worker1", "worker2"):
                    group.start(name, celery_worker_cmd(hostname=f"{name}@%h", concurrency=2))
                for name in ("worker1", "worker2"):
                    wait_for(lambda n=name: "ready." in group.procs[n].output(), timeout=60,
                             message=lambda n=name: f"{n} did not start:\n{group.procs[n].tail()}")
                previous = sys.modules["celeryflow.install"]._installed
                saved = {k: os.environ.get(k) for k in env}
                os.environ.update(env)
                try:
                    from celeryflow_tasks.app import make_app

                    app = make_app("celeryflow-tests")
                finally:
                    sys.modules["celeryflow.install"]._installed = previous
                    for k, v in saved.items():
                        if v is None:
                            os.environ.pop(k, None)
                        else:
                            os.environ[k] = v
                yield FlowEnv("remote", logbook, app, tmp)


@pytest.fixture(params=["embedded", "remote"])
def flow_env(request: pytest.FixtureRequest, tmp_path: Path) -> FlowEnv:
    if request.param == "embedded":
        return FlowEnv("embedded", f"sqlite:///{tmp_path / 'logbook.db'}", None, tmp_path)
    env: FlowEnv = request.getfixturevalue("remote_env")
    return env
