"""``memory://``: a logbook in process memory (in-memory SQLite), for tests and scripts.

One in-memory database per ``memory://`` URL per process, shared by all its
threads: a single connection (``StaticPool``, ``check_same_thread=False``),
so a process lock serializes transactions and no two threads ever interleave
statements on it. ``memory://name`` URLs give separate databases.

Nothing survives the process; a forked child gets a private copy of the data
as it was at the fork (it is plain process memory).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from celeryflow.persistence.backends.impl_sqlalchemy import SQLAlchemyBackend, install_sqlite_events

MEMORY_SCHEMES = ("memory://", "sqlite://", "sqlite:///:memory:")


def is_memory_url(url: str) -> bool:
    """Whether ``url`` names an in-memory logbook (``memory://[name]``, ``sqlite://``)."""
    return url.startswith("memory://") or url in MEMORY_SCHEMES[1:]


class MemoryBackend(SQLAlchemyBackend):
    """The in-memory logbook: the same interface and SQL as :class:`SQLAlchemyBackend`."""

    def _create_engine(self, raw_url: str, options: dict[str, Any]) -> Engine:
        # pool options make no sense for one shared connection; they are accepted and ignored
        engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        # busy_timeout 0: the process lock already serializes; there is nobody else to wait for
        install_sqlite_events(engine, 0, wal=False)
        return engine

    def _new_serial_lock(self) -> AbstractContextManager[Any]:
        # reentrant: a transaction nested in the same thread then fails with an SQL error
        # ("cannot start a transaction within a transaction") instead of hanging forever
        return threading.RLock()

    def dispose(self) -> None:
        """Nothing to do: disposing the only connection would drop the database."""

    def after_fork(self) -> None:
        # keep the (copied) connection: the child's data lives in it. A lock held by
        # another parent thread at fork time would never be released in the child.
        self._serial = self._new_serial_lock()
        self._ready_lock = threading.Lock()


__all__ = ["MemoryBackend", "is_memory_url"]
