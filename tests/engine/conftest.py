"""Run the same scenarios (a) on the embedded default and (b) on the stock app with two
separate ``celery worker`` processes on Redis, with the logbook in PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from celeryflow import engines
from tests.support.remote import remote_workers


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
    with remote_workers(tmp, "tests.engine.atoms", "engine-remote") as remote:
        yield FlowEnv("remote", remote.logbook, remote.app, tmp)


@pytest.fixture(params=["embedded", "remote"])
def flow_env(request: pytest.FixtureRequest, tmp_path: Path) -> FlowEnv:
    if request.param == "embedded":
        return FlowEnv("embedded", f"sqlite:///{tmp_path / 'logbook.db'}", None, tmp_path)
    env: FlowEnv = request.getfixturevalue("remote_env")
    return env


@pytest.fixture
def restore_default_app() -> Iterator[None]:
    """Put back the process's installed app after a test that calls ``celeryflow.install``."""
    import sys

    module: Any = sys.modules["celeryflow.install"]
    previous = module._installed
    yield
    module._installed = previous
