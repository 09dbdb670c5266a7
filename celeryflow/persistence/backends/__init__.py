"""Logbook backends: ``fetch(conf)`` returns the process's backend for a database URL.

``conf`` is a URL string, a TaskFlow-style dict (``{"connection": url, ...}``
plus options) or a backend (returned as is)::

    backend = fetch("postgresql://user:pw@db/celeryflow")
    backend = fetch({"connection": "sqlite:////var/lib/app/logbook.db", "busy_timeout": 60})

URLs: ``sqlite:///path``, ``memory://`` (or ``sqlite://``), ``postgresql://``
(psycopg 3, else psycopg2), ``mysql://`` / ``mariadb://`` / ``mysql+pymysql://`` (PyMySQL),
TaskFlow's ``dir:///path`` / ``file:///path`` (an SQLite logbook inside that
directory: see impl_dir).

One backend (engine and pool) per URL and options per process. Celery's
prefork pool forks workers from a parent that may already hold connections:
a forked child drops the inherited pools (``os.register_at_fork``) and
connects afresh.

The schema is created or upgraded on first use, unless ``auto_migrate=False``
or the environment has ``CELERYFLOW_AUTO_MIGRATE=0``; then first use only
checks it and says to run ``celeryflow db upgrade``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from celeryflow.exceptions import ConfigurationError
from celeryflow.persistence.backends.base import Backend, BackendURL, Connection, mask_url
from celeryflow.persistence.backends.impl_dir import is_dir_url, sqlite_url
from celeryflow.persistence.backends.impl_memory import MemoryBackend, is_memory_url
from celeryflow.persistence.backends.impl_sqlalchemy import SQLAlchemyBackend

AUTO_MIGRATE_ENV = "CELERYFLOW_AUTO_MIGRATE"

_CacheKey = tuple[str, bool, tuple[tuple[str, str], ...]]
_cache: dict[_CacheKey, Backend] = {}
_cache_lock = threading.Lock()


def auto_migrate_default() -> bool:
    """``False`` when ``CELERYFLOW_AUTO_MIGRATE`` is ``0``/``false``/``no``/``off``, else ``True``."""
    return os.environ.get(AUTO_MIGRATE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def fetch(
    conf: str | Mapping[str, Any] | Backend, *, auto_migrate: bool | None = None, **options: Any
) -> Backend:
    """The backend for ``conf``, created on first request and cached for the process.

    Args:
        conf: a URL, a dict with ``connection`` (the URL) and options, or a backend.
        auto_migrate: upgrade the schema on first use; default from
            ``CELERYFLOW_AUTO_MIGRATE`` (on unless ``0``).
        **options: engine options: ``pool_size``, ``max_overflow``, ``pool_timeout``,
            ``pool_recycle``, ``pool_pre_ping`` (default off: see impl_sqlalchemy), ``echo``,
            ``connect_timeout`` (s), ``busy_timeout`` (s, SQLite); TaskFlow's ``max_pool_size``, ``idle_timeout`` and
            ``connection_debug`` too.

    Raises:
        StorageFailure: the URL is malformed, unsupported, or its driver is missing.
        ConfigurationError: ``conf`` has no URL, or an unknown option.
    """
    if isinstance(conf, Backend):
        return conf
    if isinstance(conf, Mapping):
        options = {**conf, **options}
        url = options.pop("connection", None)
    else:
        url = conf
    if not isinstance(url, str) or not url:
        raise ConfigurationError(
            f"No logbook URL in {mask_url(str(conf))!r}: pass a URL such as sqlite:///logbook.db "
            "or a dict {'connection': url}"
        )
    if is_dir_url(url):
        url = sqlite_url(url, options)
    if "auto_migrate" in options:
        option = options.pop("auto_migrate")
        auto_migrate = option if auto_migrate is None else auto_migrate
    auto = auto_migrate_default() if auto_migrate is None else bool(auto_migrate)
    key: _CacheKey = (url, auto, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _cache_lock:
        backend = _cache.get(key)
        if backend is None:
            cls = MemoryBackend if is_memory_url(url) else SQLAlchemyBackend
            backend = cls(url, auto_migrate=auto, options=options, on_close=_forget)
            _cache[key] = backend
        return backend


@contextmanager
def backend(conf: str | Mapping[str, Any] | Backend, **options: Any) -> Iterator[Backend]:
    """The backend for ``conf``, its schema upgraded, as a ``with`` block (TaskFlow's ``backend``).

    The backend is shared by the process (see :func:`fetch`), so leaving the block does
    not close it: other engines of the process may be using it (``close_all`` does).
    """
    be = fetch(conf, **options)
    with be.get_connection() as conn:
        conn.upgrade()
    yield be


def close_all(url: str | None = None) -> None:
    """Close every cached backend (or those for ``url``): for shutdown and tests."""
    with _cache_lock:
        doomed = [b for b in _cache.values() if url is None or b.url == url]
    for backend in doomed:
        backend.close()


def _forget(backend: Backend) -> None:
    with _cache_lock:
        for key in [k for k, b in _cache.items() if b is backend]:
            del _cache[key]


def _after_fork_in_child() -> None:
    global _cache_lock
    # another parent thread may have held the lock at the fork: it would never be released here
    _cache_lock = threading.Lock()
    for backend in list(_cache.values()):
        backend.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = [
    "AUTO_MIGRATE_ENV",
    "Backend",
    "BackendURL",
    "Connection",
    "MemoryBackend",
    "SQLAlchemyBackend",
    "auto_migrate_default",
    "backend",
    "close_all",
    "fetch",
]
