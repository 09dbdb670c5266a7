"""Where the semantics tests run: (a) the embedded default (in-process worker threads,
SQLite file logbook) and (b) the stock app with two separate ``celery worker``
processes on a private Redis db, with the logbook in a fresh PostgreSQL database.

The separate workers are started once per session (starting Celery costs seconds)
and import ``tests.semantics.atoms`` (``CELERYFLOW_IMPORTS``); each test gets its own
trace file, and every flow has its own id, so tests do not see each other's work.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import celeryflow.install  # noqa: F401  (the module; the package attribute is the function)
from celeryflow import engines
from tests.support.procs import ProcessGroup, unexpected_tracebacks
from tests.support.remote import remote_workers

ATOMS_MODULE = "tests.semantics.atoms"


@dataclass
class FlowEnv:
    """Where a scenario runs: ``app`` None means the embedded default."""

    kind: str
    backend: str
    app: Any
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    group: ProcessGroup | None = None

    @property
    def remote(self) -> bool:
        return self.kind == "remote"

    def trace(self) -> str:
        return str(self.tmp / f"trace-{uuid.uuid4().hex[:8]}.log")

    def load(self, flow: Any, store: dict[str, Any] | None = None, **kw: Any) -> engines.CeleryEngine:
        return engines.load(flow, store=store, app=self.app, backend=self.backend, **kw)

    def run(self, flow: Any, store: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return engines.run(flow, store=store, app=self.app, backend=self.backend, **kw)

    def load_from_detail(self, detail: Any, store: dict[str, Any] | None = None, **kw: Any) -> engines.CeleryEngine:
        return engines.load_from_detail(detail, store=store, app=self.app, backend=self.backend, **kw)

    def load_from_factory(self, factory: Any, **kw: Any) -> engines.CeleryEngine:
        return engines.load_from_factory(factory, app=self.app, backend=self.backend, **kw)


@pytest.fixture(scope="session")
def remote_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowEnv]:
    tmp = tmp_path_factory.mktemp("semantics-remote")
    with remote_workers(tmp, ATOMS_MODULE, "semantics-remote") as remote:
        group = remote.group
        yield FlowEnv("remote", remote.logbook, remote.app, tmp, remote.env, group)
        for name in ("worker1", "worker2"):
            out = group.procs[name].output()
            unexpected = unexpected_tracebacks(out)
            assert not unexpected, f"{name} logged a traceback:\n{unexpected[0][-4000:]}"


@pytest.fixture
def embedded_env(tmp_path: Path) -> FlowEnv:
    return FlowEnv("embedded", f"sqlite:///{tmp_path / 'logbook.db'}", None, tmp_path)


@pytest.fixture(params=["embedded", "remote"])
def flow_env(request: pytest.FixtureRequest, tmp_path: Path) -> FlowEnv:
    if request.param == "embedded":
        env: FlowEnv = request.getfixturevalue("embedded_env")
        return env
    remote: FlowEnv = request.getfixturevalue("remote_env")
    return FlowEnv("remote", remote.backend, remote.app, tmp_path, remote.env, remote.group)
