"""The pytest fixtures for testing your flows (opt in: ``-p celeryflow.testing.plugin``).

Fixtures
--------
``celeryflow_logbook_url`` -> str
    a logbook private to the test: an SQLite file under ``tmp_path``; with
    ``--celeryflow-logbook postgresql://...`` (or ``mysql+pymysql://...``, ini
    ``celeryflow_logbook``, env ``CELERYFLOW_TEST_LOGBOOK``) a fresh schema/database on
    that server, dropped after the test.
``celeryflow_embedded_app`` -> Celery
    the embedded default (in-process worker threads, memory transport), started.
``celeryflow_runner`` -> FlowRunner
    runs flows on the embedded default with the private logbook; ``run()``,
    ``crash()`` / ``resume()``, ``for_each_failure_point()``.
``celeryflow_app`` -> Celery
    *your* app: override this fixture to return it. The default is a bare app on
    ``--celeryflow-broker`` (default ``memory://``).
``celeryflow_worker_parameters`` -> dict
    keyword arguments for ``start_worker`` (default: the ``threads`` pool, 4 threads).
``celeryflow_worker``
    an in-process Celery worker (``celery.contrib.testing.worker.start_worker``) on
    ``celeryflow_app``, which ``celeryflow.install`` made run flows on the private logbook.
``celeryflow_worker_runner`` -> FlowRunner
    a runner on ``celeryflow_app`` whose atoms that worker runs.

Every name starts with ``celeryflow_``: nothing clashes with ``celery.contrib.pytest``
(``celery_app``, ``celery_worker``...) or pytest-celery's fixtures.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from celeryflow.testing.options import BROKER_ENV, LOGBOOK_ENV, add_options, setting

if TYPE_CHECKING:
    from celery import Celery

    from celeryflow.testing.runner import FlowRunner


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.fixture
def celeryflow_logbook_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    from celeryflow.testing.databases import private_logbook

    with private_logbook(setting(request.config, "logbook", LOGBOOK_ENV), tmp_path) as url:
        yield url


@pytest.fixture
def celeryflow_embedded_app() -> Celery:
    from celeryflow.runtime.embedded import embedded_app, ensure_worker

    app = embedded_app()
    ensure_worker(app)
    return app


@pytest.fixture
def celeryflow_runner(celeryflow_logbook_url: str, celeryflow_embedded_app: Celery) -> Iterator[FlowRunner]:
    from celeryflow.testing.runner import FlowRunner

    runner = FlowRunner(celeryflow_logbook_url, celeryflow_embedded_app)
    yield runner
    runner.close()


@pytest.fixture
def celeryflow_app(request: pytest.FixtureRequest) -> Celery:
    from celery import Celery

    from celeryflow.install import CELERY_SETTINGS

    app = Celery("celeryflow-tests", set_as_current=False)
    app.conf.update(CELERY_SETTINGS, broker_url=setting(request.config, "broker", BROKER_ENV) or "memory://",
                    task_ignore_result=True, broker_connection_retry_on_startup=True,
                    worker_hijack_root_logger=False)
    return app


@pytest.fixture
def celeryflow_worker_parameters() -> dict[str, Any]:
    return {"pool": "threads", "concurrency": 4}


@pytest.fixture
def celeryflow_worker(celeryflow_app: Celery, celeryflow_logbook_url: str,
                      celeryflow_worker_parameters: dict[str, Any]) -> Iterator[Any]:
    from celery.contrib.testing.app import setup_default_app
    from celery.contrib.testing.worker import start_worker

    import celeryflow
    from celeryflow.runtime import embedded

    install_module: Any = sys.modules["celeryflow.install"]
    previous = install_module._installed
    celeryflow.install(celeryflow_app, backend=celeryflow_logbook_url, beat=False)
    try:
        # start_worker makes the app Celery's default and current one: put them back after
        with setup_default_app(celeryflow_app), start_worker(
                celeryflow_app, perform_ping_check=False, **celeryflow_worker_parameters) as worker:
            yield worker
    finally:
        # the test's app does not stay the process-wide default for app=None
        install_module._installed = previous
        # start_worker stops its worker through Celery's process-wide flag (worker.state.should_terminate),
        # which every worker in the process obeys: the embedded one, if running, is stopping too. Stop it
        # for good, so the next embedded run starts a fresh one instead of sending to a dying one.
        embedded.stop_worker()


@pytest.fixture
def celeryflow_worker_runner(celeryflow_app: Celery, celeryflow_logbook_url: str,
                             celeryflow_worker: Any) -> Iterator[FlowRunner]:
    from celeryflow.testing.runner import FlowRunner

    runner = FlowRunner(celeryflow_logbook_url, celeryflow_app)
    yield runner
    runner.close()
