"""Pytest plugin: local services (Redis, RabbitMQ, PostgreSQL, MariaDB) and processes.

A test that needs a service asks for its fixture; if the service is down the test is
skipped locally and fails under CI (``CI=true``). Tests using these fixtures get the
``services`` marker automatically (``-m "not services"`` runs the rest).

Fixtures
--------
``redis_db`` -> int            a Redis db number (1..15) private to this test, FLUSHDB
                               before and after; claimed with a lock in db 0 so that
                               concurrent pytest runs on one machine never share a db
``redis_url`` -> str           ``redis://HOST:PORT/<redis_db>``
``redis_client``               ``redis.Redis`` on that db (decode_responses=False)
``redis_prefix`` -> str        a key prefix unique to this test (``cftest:<hex>:``)
``redis_session_url`` -> str   a db claimed for the whole session (session-scoped apps)
``rabbitmq_url`` -> str        ``amqp://guest:guest@HOST:PORT/<vhost>``: a vhost created
                               for this test (rabbitmqctl) and deleted after; where
                               rabbitmqctl is unusable, the default vhost "/" (then use
                               ``rabbitmq_prefix`` for queue/exchange names)
``rabbitmq_prefix`` -> str     a queue/exchange name prefix unique to this test
``postgres_available`` -> str  SQLAlchemy URL of the server's ``test`` database
``mariadb_available`` -> str   SQLAlchemy URL of the server's ``test`` database
``process_group``              a ``ProcessGroup`` logging to ``tmp_path/procs``, stopped
                               (every process, by pid/process group) after the test
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    MARIADB_URL,
    POSTGRES_URL,
    RABBITMQ_HOST,
    RABBITMQ_PASSWORD,
    RABBITMQ_PORT,
    RABBITMQ_USER,
    REDIS_HOST,
    REDIS_PORT,
    ProcessGroup,
    require,
    stop_all_groups,
)

SERVICE_FIXTURES = frozenset({
    "redis_db", "redis_url", "redis_client", "redis_session_url",
    "rabbitmq_url", "postgres_available", "mariadb_available",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Safety net: no subprocess outlives the test session.
    stop_all_groups()


def _token() -> str:
    return uuid.uuid4().hex[:12]


# ---------------------------------------------------------------------------- Redis
class RedisDbPool:
    """Hands out Redis db numbers 1..N-1, one holder at a time, across processes.

    A claim is ``SET <lock key> <token> NX EX <ttl>`` in db 0; the TTL frees the db if
    a pytest run dies without releasing it. Claims rotate through the pool so that
    consecutive tests do not reuse the db just released.
    """

    LOCK_KEY = "celeryflow:tests:redis-db-lock:{}"
    TTL = 3600

    def __init__(self, host: str, port: int) -> None:
        import redis

        self.host, self.port = host, port
        self._admin = redis.Redis(host=host, port=port, db=0, socket_timeout=10)
        self._next = itertools.count(os.getpid())
        self._size: int | None = None

    def size(self) -> int:
        if self._size is None:
            try:
                value = self._admin.config_get("databases").get("databases", 16)
                self._size = int(str(value))
            except Exception:  # CONFIG may be renamed/disabled
                self._size = 16
        return self._size

    def acquire(self, holder: str, timeout: float = 60.0) -> tuple[int, str]:
        dbs = list(range(1, self.size()))
        if not dbs:
            raise RuntimeError("the Redis server has a single database: cannot isolate tests")
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{holder}"
        deadline = time.monotonic() + timeout
        while True:
            start = next(self._next)
            for i in range(len(dbs)):
                db = dbs[(start + i) % len(dbs)]
                if self._admin.set(self.LOCK_KEY.format(db), token, nx=True, ex=self.TTL):
                    return db, token
            if time.monotonic() >= deadline:
                raise RuntimeError(f"no free Redis test database among {dbs} within {timeout}s")
            time.sleep(0.2)

    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

    def release(self, db: int, token: str) -> None:
        self._admin.eval(self._RELEASE, 1, self.LOCK_KEY.format(db), token)

    def client(self, db: int) -> Any:
        import redis

        return redis.Redis(host=self.host, port=self.port, db=db, socket_timeout=30)


_redis_pool: RedisDbPool | None = None


def _pool() -> RedisDbPool:
    global _redis_pool
    if _redis_pool is None:
        _redis_pool = RedisDbPool(REDIS_HOST, REDIS_PORT)
    return _redis_pool


def _claim_redis_db(holder: str) -> Iterator[int]:
    require("redis")
    pool = _pool()
    db, token = pool.acquire(holder)
    client = pool.client(db)
    try:
        client.flushdb()
        yield db
    finally:
        try:
            client.flushdb()
        finally:
            client.close()
            pool.release(db, token)


@pytest.fixture
def redis_db(request: pytest.FixtureRequest) -> Iterator[int]:
    yield from _claim_redis_db(request.node.nodeid)


@pytest.fixture
def redis_url(redis_db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"


@pytest.fixture
def redis_client(redis_db: int) -> Iterator[Any]:
    client = _pool().client(redis_db)
    yield client
    client.close()


@pytest.fixture
def redis_prefix() -> str:
    return f"cftest:{_token()}:"


@pytest.fixture(scope="session")
def redis_session_url() -> Iterator[str]:
    for db in _claim_redis_db("session"):
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


# ------------------------------------------------------------------------- RabbitMQ
_rabbitmqctl_ok: bool | None = None


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _can_make_vhosts() -> bool:
    """rabbitmqctl present and allowed to talk to the local node (needs root or the
    rabbitmq user's Erlang cookie)? Checked once per session."""
    global _rabbitmqctl_ok
    if _rabbitmqctl_ok is None:
        if shutil.which("rabbitmqctl") is None or RABBITMQ_HOST not in ("127.0.0.1", "localhost", "::1"):
            _rabbitmqctl_ok = False
        else:
            try:
                _rabbitmqctl_ok = _rabbitmqctl("list_vhosts").returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                _rabbitmqctl_ok = False
    return _rabbitmqctl_ok


@pytest.fixture
def rabbitmq_prefix() -> str:
    return f"cftest.{_token()}."


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    require("rabbitmq")
    base = f"amqp://{RABBITMQ_USER}:{RABBITMQ_PASSWORD}@{RABBITMQ_HOST}:{RABBITMQ_PORT}"
    if not _can_make_vhosts():
        yield base + "//"
        return
    vhost = f"cftest-{os.getpid()}-{_token()}"
    made = _rabbitmqctl("add_vhost", vhost)
    if made.returncode != 0:
        pytest.fail(f"rabbitmqctl add_vhost {vhost} failed: {made.stderr or made.stdout}")
    try:
        perms = _rabbitmqctl("set_permissions", "-p", vhost, RABBITMQ_USER, ".*", ".*", ".*")
        if perms.returncode != 0:
            pytest.fail(f"rabbitmqctl set_permissions on {vhost} failed: {perms.stderr or perms.stdout}")
        yield f"{base}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


# ---------------------------------------------------------------------- SQL servers
@pytest.fixture(scope="session")
def postgres_available() -> str:
    """Skip (locally) / fail (CI) unless PostgreSQL answers; returns the SQLAlchemy URL
    of an existing database (``test``) to create per-test schemas/databases from."""
    require("postgres")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def mariadb_available() -> str:
    """Skip (locally) / fail (CI) unless MariaDB answers; returns the SQLAlchemy URL of
    an existing database (``test``) to create per-test databases from."""
    require("mariadb")
    return MARIADB_URL


# ------------------------------------------------------------------------ processes
@pytest.fixture
def process_group(tmp_path: Path) -> Iterator[ProcessGroup]:
    with ProcessGroup(tmp_path / "procs") as group:
        yield group
