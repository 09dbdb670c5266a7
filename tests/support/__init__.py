"""Reusable test helpers (no fixtures here: those live in ``tests/fixtures_*.py``).

* Services: ``require_service(name, host, port)``, ``service_up(host, port)``,
  ``in_ci()``, and the service addresses (overridable by environment variables).
* Processes: ``ProcessGroup``, ``ManagedProcess``, ``wait_for`` and the argv builders
  ``celery_worker_cmd``, ``celery_beat_cmd``, ``conductor_cmd`` (see ``procs``).
"""

from __future__ import annotations

import os
import socket

import pytest

from tests.support.procs import (
    REPO_ROOT,
    ManagedProcess,
    ProcessGroup,
    celery_beat_cmd,
    celery_worker_cmd,
    conductor_cmd,
    stop_all_groups,
    wait_for,
)

__all__ = [
    "MARIADB_URL",
    "POSTGRES_URL",
    "RABBITMQ_HOST",
    "RABBITMQ_PASSWORD",
    "RABBITMQ_PORT",
    "RABBITMQ_USER",
    "REDIS_HOST",
    "REDIS_PORT",
    "REPO_ROOT",
    "SERVICES",
    "ManagedProcess",
    "ProcessGroup",
    "celery_beat_cmd",
    "celery_worker_cmd",
    "conductor_cmd",
    "in_ci",
    "require",
    "require_service",
    "service_up",
    "stop_all_groups",
    "wait_for",
]

# ------------------------------------------------------------------ service addresses
REDIS_HOST = os.environ.get("CELERYFLOW_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("CELERYFLOW_TEST_REDIS_PORT", "6379"))
RABBITMQ_HOST = os.environ.get("CELERYFLOW_TEST_RABBITMQ_HOST", "127.0.0.1")
RABBITMQ_PORT = int(os.environ.get("CELERYFLOW_TEST_RABBITMQ_PORT", "5672"))
RABBITMQ_USER = os.environ.get("CELERYFLOW_TEST_RABBITMQ_USER", "guest")
RABBITMQ_PASSWORD = os.environ.get("CELERYFLOW_TEST_RABBITMQ_PASSWORD", "guest")
# SQLAlchemy URLs of an existing database the tests may create schemas/databases from.
POSTGRES_URL = os.environ.get(
    "CELERYFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("CELERYFLOW_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


# name -> (host, port): what require("<name>") checks.
SERVICES: dict[str, tuple[str, int]] = {
    "redis": (REDIS_HOST, REDIS_PORT),
    "rabbitmq": (RABBITMQ_HOST, RABBITMQ_PORT),
    "postgres": _host_port(POSTGRES_URL, 5432),
    "mariadb": _host_port(MARIADB_URL, 3306),
}


def in_ci() -> bool:
    """True when running under CI (``CI=true``): missing services fail, not skip."""
    return os.environ.get("CI", "").strip().lower() == "true"


_up: set[tuple[str, int]] = set()


def service_up(host: str, port: int, timeout: float = 1.0) -> bool:
    """Can a TCP connection be opened to host:port? (Successes are cached.)"""
    if (host, port) in _up:
        return True
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError:
        return False
    _up.add((host, port))
    return True


def require_service(name: str, host: str, port: int) -> None:
    """Skip the test if ``name`` is not answering on host:port -- or fail it under CI
    (``CI=true``), where .ci/start-services.sh has started every service and a missing
    one is a broken environment, not a reason to pass silently."""
    if service_up(host, port):
        return
    reason = f"{name} is not answering on {host}:{port} (start it: .ci/start-services.sh)"
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def require(name: str) -> None:
    """``require_service`` for one of the known ``SERVICES`` by name."""
    host, port = SERVICES[name]
    require_service(name, host, port)
