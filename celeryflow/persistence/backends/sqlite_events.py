"""SQLite connection set-up: WAL, busy timeout, foreign keys, and our own ``BEGIN``.

Every write transaction starts with ``BEGIN IMMEDIATE`` (it takes the single write lock
up front: two processes never both hold a read lock and deadlock upgrading it); a
transaction marked :data:`READONLY` starts with a plain deferred ``BEGIN``. The pysqlite
driver's own BEGIN is switched off (the recipe from SQLAlchemy's SQLite dialect docs).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection as SAConnection
from sqlalchemy.engine import Engine

#: execution option marking a transaction that will not write (SQLite: plain deferred BEGIN).
READONLY = "celeryflow_readonly"


def _ensure_wal(cursor: Any, busy_timeout: float) -> None:
    """Put the database file in WAL mode (persistent: usually it already is).

    Switching needs an exclusive lock, and SQLite reports "database is locked" at
    once, without its busy handler, when another process holds a lock meanwhile
    (several workers opening a brand-new logbook together, one of them already
    migrating it). Retry until the file is in WAL mode, up to the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.005
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)  # another process holds the lock: wait for it, briefly
            delay = min(0.2, delay * 2)


def install_sqlite_events(engine: Engine, busy_timeout: float, *, wal: bool) -> None:
    """Set the SQLite pragmas on each new connection and take over BEGIN (see module docstring)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not emit BEGIN: we do
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if wal:
            _ensure_wal(cursor, busy_timeout)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: SAConnection) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READONLY) else "BEGIN IMMEDIATE")
