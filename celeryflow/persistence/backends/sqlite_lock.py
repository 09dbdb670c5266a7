"""A write lock for the processes of one machine sharing an SQLite logbook file.

SQLite has one writer at a time. A writer that finds the lock taken is put to
sleep by SQLite's busy handler, which polls: it sleeps 1, 2, 5, 10, 15, 20, 25 ...
up to 100 ms between tries, so under steady contention (two worker processes
finishing atoms back to back) a waiting writer often sleeps long after the lock
was released. An ``flock`` on a side file wakes the next writer when the lock is
released. It is a performance aid only: SQLite's own locking (``BEGIN
IMMEDIATE`` and the busy timeout) still guarantees exclusivity, so a process
without this lock (the ``sqlite3`` shell, another library) is merely slower,
never unsafe; and nothing waits on this lock while holding SQLite's.
"""

from __future__ import annotations

import logging
import os
import threading
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

LOG = logging.getLogger(__name__)


class SQLiteWriteLock:
    """Held around every write transaction of one SQLite file (reentrant per thread).

    Args:
        database: the SQLite file; the lock file is ``<database>.writelock`` beside it.
    """

    def __init__(self, database: str) -> None:
        self.path = f"{database}.writelock"
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> SQLiteWriteLock:
        self._thread_lock.acquire()
        self._depth += 1
        if self._depth == 1:
            self._lock_file()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None and fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _lock_file(self) -> None:
        if fcntl is None:
            return
        if self._pid != os.getpid():
            # A forked child shares the parent's open file description, and with it the
            # parent's flock: it needs its own (closing the inherited copy leaves the parent's alone).
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
            self._fd = None
            self._pid = os.getpid()
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                LOG.debug("no SQLite write lock file at %s (%s): SQLite's busy handler alone", self.path, exc)
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except OSError as exc:
                LOG.debug("flock on %s failed (%s): SQLite's busy handler alone", self.path, exc)

    def after_fork(self) -> None:
        """In a forked child: a lock state copied from a parent thread must not be inherited."""
        self._thread_lock = threading.RLock()
        self._depth = 0


__all__ = ["SQLiteWriteLock"]
