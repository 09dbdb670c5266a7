"""Pytest plugin: Celery test apps and workers.

The classic fixtures come from ``celery.contrib.pytest`` (loaded in tests/conftest.py;
pytest-celery's Docker plugin is disabled in pyproject.toml with ``-p no:celery``):
``celery_app``, ``celery_worker`` (in-process worker thread, ``solo`` pool by
default), ``celery_includes``, ``celery_worker_pool``, ``celery_parameters``, ...

Overridden here:

``celery_config`` (function scope) -> dict
    JSON-only settings with broker and result backend on this test's private Redis db
    (``redis_url``), so a worker of one test never takes another test's messages.
``celery_session_config`` (session scope) -> dict
    the same on a Redis db claimed for the whole session; ``celery_session_app`` /
    ``celery_session_worker`` use it (the stock ``celery_session_app`` would ask for the
    function-scoped ``celery_config`` and fail with a ScopeMismatch).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

JSON_ONLY: dict[str, Any] = {
    "accept_content": ["json"],
    "task_serializer": "json",
    "result_serializer": "json",
    "result_accept_content": ["json"],
    "event_serializer": "json",
}


def redis_celery_config(url: str) -> dict[str, Any]:
    """Celery settings for a test app on the Redis db at ``url`` (JSON only)."""
    return {
        **JSON_ONLY,
        "broker_url": url,
        "result_backend": url,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
    }


@pytest.fixture
def celery_config(redis_url: str) -> dict[str, Any]:
    return redis_celery_config(redis_url)


@pytest.fixture(scope="session")
def celery_session_config(redis_session_url: str) -> dict[str, Any]:
    return redis_celery_config(redis_session_url)


@pytest.fixture(scope="session")
def celery_session_app(
    request: pytest.FixtureRequest,
    celery_session_config: Mapping[str, Any],
    celery_parameters: Mapping[str, Any],
    celery_enable_logging: bool,
    use_celery_app_trap: bool,
) -> Iterator[Any]:
    from celery.contrib.pytest import _create_app

    mark = request.node.get_closest_marker("celery")
    config = dict(celery_session_config, **(mark.kwargs if mark else {}))
    with _create_app(enable_logging=celery_enable_logging, use_trap=use_celery_app_trap,
                     parameters=celery_parameters, **config) as app:
        if not use_celery_app_trap:
            app.set_default()
            app.set_current()
        yield app
