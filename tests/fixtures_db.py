"""Pytest plugin: a fresh, isolated logbook database per test.

Fixtures
--------
``sqlite_url`` -> str      ``sqlite:///<tmp_path>/logbook.db``
``postgres_url`` -> str    a schema created for this test in the server's ``test``
                           database; the URL's connections use it
                           (``?options=-csearch_path%3D<schema>``); dropped after
``mariadb_url`` -> str     a database ``cf_<random>`` created for this test; dropped after
``memory_url`` -> str      ``memory://<random>``: a private in-process database
``db_url`` -> str          parametrized over ``sqlite``, ``postgresql``, ``mariadb``
``any_db_url`` -> str      the same plus ``memory``
``backend``                ``persistence.backends.fetch(db_url)``, closed after

Servers come from ``CELERYFLOW_TEST_POSTGRES_URL`` / ``CELERYFLOW_TEST_MARIADB_URL``
(default: the local ones). A server that does not answer skips the test locally and
fails it under CI (``CI=true``): a suite skipped in CI would hide a broken product.
Every backend the test fetched for its URL is closed before the database is dropped.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL, make_url

from celeryflow.persistence import backends
from celeryflow.persistence.backends.base import Backend
from celeryflow.testing.databases import mariadb_logbook, postgres_logbook, unique_name

POSTGRES_BASE = os.environ.get(
    "CELERYFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_BASE = os.environ.get("CELERYFLOW_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")

SERVER_PARAMS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.services),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.services),
]
ALL_PARAMS = [*SERVER_PARAMS, pytest.param("memory", id="memory")]
_FIXTURE_OF = {
    "sqlite": "sqlite_url",
    "postgresql": "postgres_url",
    "mariadb": "mariadb_url",
    "memory": "memory_url",
}


def require_service(name: str, host: str, port: int) -> None:
    """Skip the test unless ``name`` accepts TCP connections on host:port; fail instead under CI."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port} ({exc})"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true and {reason}: start it (see .ci/run)", pytrace=False)
    pytest.skip(reason)


def _server(base: str, name: str, default_port: int, driver: str) -> URL:
    url = make_url(base).set(drivername=driver)
    require_service(name, url.host or "127.0.0.1", url.port or default_port)
    return url


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> Iterator[str]:
    url = f"sqlite:///{os.path.join(tmp_path, 'logbook.db')}"
    yield url
    backends.close_all(url)


@pytest.fixture
def memory_url() -> Iterator[str]:
    url = f"memory://{unique_name()}"
    yield url
    backends.close_all(url)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL schema (usable at any fixture scope)."""
    with postgres_logbook(_server(POSTGRES_BASE, "PostgreSQL", 5432, "postgresql+psycopg")) as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@contextlib.contextmanager
def mariadb_database() -> Iterator[str]:
    """A fresh MariaDB database (usable at any fixture scope)."""
    with mariadb_logbook(_server(MARIADB_BASE, "MariaDB", 3306, "mysql+pymysql")) as url:
        yield url


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    with mariadb_database() as url:
        yield url


@pytest.fixture(params=SERVER_PARAMS)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each kind that runs as a server or file: sqlite, postgresql, mariadb."""
    url: str = request.getfixturevalue(_FIXTURE_OF[request.param])
    return url


@pytest.fixture(params=ALL_PARAMS)
def any_db_url(request: pytest.FixtureRequest) -> str:
    """Like ``db_url``, plus ``memory://``."""
    url: str = request.getfixturevalue(_FIXTURE_OF[request.param])
    return url


@pytest.fixture
def backend(db_url: str) -> Iterator[Backend]:
    """The backend of a fresh ``db_url`` (schema created on first use), closed after the test."""
    instance = backends.fetch(db_url)
    yield instance
    instance.close()
