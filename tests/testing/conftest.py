"""Where the tests of celeryflow.testing run: (a) the embedded default with an SQLite logbook,
(b) an in-process worker (``celeryflow_worker``) on "the user's app", a Celery app on this
test's private Redis db, with the logbook in a fresh PostgreSQL schema.

The plugin's fixtures are used as a user would use them; only ``celeryflow_app`` (the
user's app) and ``celeryflow_logbook_url`` (PostgreSQL for the worker runs) are
overridden, as a user's conftest.py would.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from celery import Celery

from celeryflow.install import CELERY_SETTINGS
from celeryflow.testing.databases import sqlite_logbook
from celeryflow.testing.runner import FlowRunner
from tests.fixtures_db import postgres_database
from tests.support.procs import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
TARGETS = ["embedded", pytest.param("worker", marks=pytest.mark.services)]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def celeryflow_logbook_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite for the embedded runs, a fresh PostgreSQL schema for the worker runs."""
    if "target" in request.fixturenames and request.getfixturevalue("target") == "worker":
        with postgres_database() as url:
            yield url
        return
    with sqlite_logbook(tmp_path) as url:
        yield url


@pytest.fixture
def celeryflow_app(redis_url: str) -> Celery:
    """The user's app: their own Celery app on Redis."""
    app = Celery("myproject", broker=redis_url, set_as_current=False)
    app.conf.update(CELERY_SETTINGS, task_ignore_result=True, worker_hijack_root_logger=False,
                    broker_connection_retry_on_startup=True)
    return app


@pytest.fixture
def runner(target: str, request: pytest.FixtureRequest) -> FlowRunner:
    """``celeryflow_runner`` (embedded) or ``celeryflow_worker_runner`` (the in-process worker on Redis)."""
    name = "celeryflow_runner" if target == "embedded" else "celeryflow_worker_runner"
    found: FlowRunner = request.getfixturevalue(name)
    return found


def load_example(name: str) -> ModuleType:
    """``examples/<name>.py`` imported under its own name, as workers import it (examples/ on sys.path)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.append(str(EXAMPLES))
    if name == "webapp" and "webapp" not in sys.modules:
        # importing it builds its Flask app, which opens the default logbook: a private one
        saved = os.environ.get("CELERYFLOW_BACKEND")
        os.environ["CELERYFLOW_BACKEND"] = "memory://celeryflow-testing-webapp"
        try:
            module = importlib.import_module(name)
        finally:
            if saved is None:
                os.environ.pop("CELERYFLOW_BACKEND", None)
            else:
                os.environ["CELERYFLOW_BACKEND"] = saved
    else:
        module = importlib.import_module(name)
    if name == "webapp":
        webapp: Any = module
        webapp.STEP_SECONDS = 0.0
    return module


@pytest.fixture
def examples() -> Any:
    """``examples.hello``, ``examples.compensation``... (modules, imported on first use)."""

    class _Examples:
        def __getattr__(self, name: str) -> ModuleType:
            return load_example(name)

    return _Examples()
