"""Shared pytest set-up.

Fixtures live in plugin modules by area so that each area can grow its own:

* ``tests.fixtures_services``: is Redis/RabbitMQ/PostgreSQL/MariaDB up? skip locally,
  fail in CI (``CI=true``); a private Redis db / key prefix per test.
* ``tests.fixtures_db``: a fresh logbook database URL per test (SQLite file,
  PostgreSQL schema, MariaDB database), parametrized over backends.
* ``tests.fixtures_celery``: Celery apps and workers (in-process and separate processes).
* ``celeryflow.testing.plugin``: the fixtures celeryflow ships for testing flows (``celeryflow_*``).
"""

pytest_plugins = [
    "celery.contrib.pytest",
    "tests.fixtures_services",
    "tests.fixtures_db",
    "tests.fixtures_celery",
    "celeryflow.testing.plugin",
]


import sys as _sys  # noqa: E402
from collections.abc import Iterator as _Iterator  # noqa: E402

import pytest as _pytest  # noqa: E402


@_pytest.fixture(autouse=True)
def _keep_the_installed_app() -> _Iterator[None]:
    """A test that installs an app (or builds the stock one) leaves no process-wide default behind:
    later tests with ``app=None`` must get the embedded default, not a broker nobody serves."""
    module = _sys.modules.get("celeryflow.install")
    previous = getattr(module, "_installed", None)
    yield
    module = _sys.modules.get("celeryflow.install")
    if module is not None:
        module._installed = previous  # type: ignore[attr-defined]
