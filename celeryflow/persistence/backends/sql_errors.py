"""Driver errors of the SQL logbook, classified and explained at the boundary.

Which failures are worth running a transaction again for (a deadlock, a lock timeout, a
dropped connection, a server shutting down), how long to wait before the next try, and
the message a :class:`~celeryflow.exceptions.StorageFailure` carries: what failed, where
(the masked URL) and what to check.
"""

from __future__ import annotations

import random
import sqlite3

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

#: backoff between retries of transient failures: base * 2**n seconds, capped, with jitter.
BACKOFF_BASE = 0.05
BACKOFF_CAP = 2.0
#: errors raised by drivers and the pool; anything else from SQLAlchemy is a programming error.
DRIVER_ERRORS = (DBAPIError, PoolTimeout)

# PostgreSQL SQLSTATEs worth another try: serialization failure, deadlock, server shutting down.
_PG_TRANSIENT = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})
# MySQL/MariaDB: lock wait timeout, deadlock, server gone away, lost connection during query.
_MYSQL_TRANSIENT = frozenset({1205, 1213, 2006, 2013})


def is_transient(exc: BaseException) -> bool:
    """Whether a failed transaction is worth running again (deadlock, lock timeout, dropped connection).

    Failing to connect at all is not: the server is down or the URL is wrong, and
    the caller should hear so at once rather than after a round of backoff.
    """
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _PG_TRANSIENT:
        return True
    code = orig.args[0] if orig is not None and orig.args else None
    if code in _MYSQL_TRANSIENT:
        return True
    return isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig)


def _is_connect_failure(exc: BaseException) -> bool:
    # SQLAlchemy wraps errors raised while connecting with no statement; a dropped
    # connection (also statement-less at COMMIT) is marked invalidated instead.
    return (
        isinstance(exc, OperationalError)
        and exc.statement is None
        and not exc.connection_invalidated
        and not is_transient(exc)
    )


def describe(exc: BaseException, url: str, attempts: int = 1) -> str:
    """A message for a driver error: what failed, where (``url``, masked) and what to check."""
    orig = getattr(exc, "orig", None) or exc
    detail = " ".join(str(orig).split())
    code = orig.args[0] if orig.args else None
    lowered = detail.lower()
    if isinstance(exc, PoolTimeout):
        return (
            f"No free connection to the logbook {url} in time ({detail}): too many concurrent "
            "transactions for the pool; raise pool_size/max_overflow or find transactions held open"
        )
    if _is_connect_failure(exc):
        if "does not exist" in lowered or code == 1049:
            what = "The logbook database does not exist: create it or fix the database name in the URL"
        elif "authentication" in lowered or "password" in lowered or code == 1045:
            what = "The logbook database refused the credentials: check the user and password in the URL"
        elif "unable to open database file" in lowered:
            what = "Cannot open the SQLite logbook file: check that its directory exists and is writable"
        else:
            what = (
                "Cannot connect to the logbook database: check that the server is running and "
                "reachable at the URL's host and port (CELERYFLOW_BACKEND)"
            )
        return f"{what}. URL: {url}. Driver said: {detail}"
    if attempts > 1:
        return (
            f"The logbook {url} failed {attempts} times in a row with transient errors (last: {detail}); "
            "the database is overloaded, restarting or unreachable: check it and retry"
        )
    if isinstance(orig, sqlite3.OperationalError) and "locked" in lowered:
        return (
            f"The SQLite logbook {url} stayed locked by another process beyond busy_timeout ({detail}); "
            "look for a process holding a long write transaction"
        )
    if "no such table" in lowered or code == 1146 or "undefinedtable" in type(orig).__name__.lower():
        return f"The logbook {url} lacks celeryflow's tables ({detail}): run `celeryflow db upgrade`"
    return f"The logbook {url} failed: {detail}"


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): exponential, capped, jittered."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    # jitter spreads out workers that collided, so they do not collide again in lockstep
    return delay / 2 + random.uniform(0, delay / 2)
