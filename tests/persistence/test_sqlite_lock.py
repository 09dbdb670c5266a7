"""The machine-wide write lock of an SQLite logbook file (persistence/backends/sqlite_lock.py)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import threading
from pathlib import Path

from celeryflow.persistence import backends
from celeryflow.persistence.backends.sqlite_lock import SQLiteWriteLock


def _hold(path: str, held: multiprocessing.synchronize.Event, release: multiprocessing.synchronize.Event) -> None:
    with SQLiteWriteLock(path):
        held.set()
        release.wait(30)


def test_a_second_process_waits_for_the_holder(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    path = str(tmp_path / "logbook.db")
    child = ctx.Process(target=_hold, args=(path, held, release))
    child.start()
    try:
        assert held.wait(30)
        lock = SQLiteWriteLock(path)
        acquired = threading.Event()

        def take() -> None:
            with lock:
                acquired.set()

        taker = threading.Thread(target=take)
        taker.start()
        # the holder still holds it: the taker must not get in (a bounded wait, not a sleep)
        assert not acquired.wait(0.3)
        release.set()
        assert acquired.wait(30)
        taker.join(30)
    finally:
        release.set()
        child.join(30)
        if child.is_alive():
            child.kill()


def test_reentrant_in_one_thread(tmp_path: Path) -> None:
    lock = SQLiteWriteLock(str(tmp_path / "x.db"))
    with lock, lock:
        pass
    with lock:
        pass


def test_file_logbooks_get_one_and_memory_does_not(tmp_path: Path) -> None:
    file_backend = backends.fetch(f"sqlite:///{tmp_path / 'a.db'}")
    memory_backend = backends.fetch("memory://lock-test")
    try:
        assert file_backend._write_lock is not None  # type: ignore[attr-defined]
        assert memory_backend._write_lock is None  # type: ignore[attr-defined]
        file_backend.run(lambda session: None)
        assert (tmp_path / "a.db.writelock").exists()
    finally:
        file_backend.close()
        memory_backend.close()
