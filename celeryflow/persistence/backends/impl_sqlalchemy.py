"""The SQL logbook backend: SQLite, PostgreSQL (psycopg 3 or psycopg2), MySQL/MariaDB (PyMySQL).

``postgresql://`` (no driver named) uses psycopg 3 when it is installed, else
psycopg2 (SQLAlchemy's own default for that spelling); ``postgresql+psycopg://``
and ``postgresql+psycopg2://`` pick one explicitly. Any spelling of one database
is the same logbook: a logbook is known by the id stored in it, not by its URL.

Per database:

* SQLite: WAL (readers never block the writer), ``busy_timeout``, foreign
  keys on, ``synchronous=NORMAL``. Every write transaction starts with
  ``BEGIN IMMEDIATE``: it takes the single write lock up front, so two worker
  processes never both hold a read lock and then deadlock upgrading it to a
  write lock ("database is locked" with no way out but a rollback). The
  pysqlite driver's own BEGIN is switched off and SQLAlchemy's ``begin`` event
  emits ours (the recipe from SQLAlchemy's SQLite dialect docs).
* PostgreSQL and MySQL/MariaDB: READ COMMITTED (row locks on the flow row do
  the serializing; no snapshot anomalies to retry), a connect timeout, and
  utf8mb4 on MySQL. No ``pool_pre_ping`` by default: it is a round trip per
  transaction (two per atom). A connection that died with the server (a
  restart, an idle reaper) fails its next statement instead; SQLAlchemy then
  invalidates the whole pool and :meth:`SQLAlchemyBackend.run` retries the
  transaction on a fresh connection, so one transaction per process pays
  instead of every one. ``pool_pre_ping=True`` in the backend options turns
  it back on.

Driver errors are converted at this boundary into :class:`StorageFailure`
with a message that names the (masked) URL and says what to check.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.engine import Connection as SAConnection
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from celeryflow.exceptions import BackendClosed, ConfigurationError, StorageFailure, UnknownBackend
from celeryflow.persistence import migrate, rows
from celeryflow.persistence.backends.base import Backend, BackendURL
from celeryflow.persistence.backends.sql_errors import BACKOFF_BASE as BACKOFF_BASE
from celeryflow.persistence.backends.sql_errors import BACKOFF_CAP as BACKOFF_CAP
from celeryflow.persistence.backends.sql_errors import DRIVER_ERRORS, backoff, describe, is_transient
from celeryflow.persistence.backends.sqlite_events import READONLY, install_sqlite_events
from celeryflow.persistence.backends.sqlite_lock import SQLiteWriteLock

__all__ = ["DRIVER_ERRORS", "READONLY", "SQLAlchemyBackend", "backoff", "describe", "engine_kwargs",
           "install_sqlite_events", "is_transient", "normalize_url", "postgres_scheme"]
from celeryflow.persistence.rows import FlowState

LOG = logging.getLogger(__name__)
T = TypeVar("T")

#: seconds SQLite waits for another process's write lock before "database is locked".
DEFAULT_BUSY_TIMEOUT = 30.0
#: seconds to wait for a TCP connection to PostgreSQL/MySQL.
DEFAULT_CONNECT_TIMEOUT = 10
_SCHEMES = {
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb")


def normalize_url(url: str) -> URL:
    """Parse a logbook URL, choosing celeryflow's drivers when the URL names none.

    Raises:
        StorageFailure: the URL is malformed or names an unsupported database.
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgres", "postgresql"):
        url = f"{postgres_scheme()}://{rest}"
    elif sep and scheme in _SCHEMES:
        url = f"{_SCHEMES[scheme]}://{rest}"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageFailure(
            f"Cannot parse the logbook URL {url!r}: use e.g. sqlite:///path/to/logbook.db, "
            "postgresql://user:password@host/db, mysql://user:password@host/db or memory://"
        ) from exc
    if parsed.get_backend_name() not in _DIALECTS:
        raise UnknownBackend(
            f"Unsupported logbook database {parsed.get_backend_name()!r} in {parsed!r}: "
            f"celeryflow supports {', '.join(_DIALECTS)}, memory:// and dir:// (file://)"
        )
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})  # 3-byte "utf8" mangles emoji
    return parsed


def postgres_scheme() -> str:
    """The SQLAlchemy scheme for ``postgresql://``: psycopg 3 when installed, else psycopg2.

    With neither installed it is psycopg 3's, whose missing-driver error names the
    ``postgres`` extra.
    """
    for module, scheme in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        try:
            importlib.import_module(module)  # imported anyway by the engine; a broken install counts as absent
        except ImportError:
            continue
        return scheme
    return "postgresql+psycopg"


def engine_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """``create_engine`` keyword arguments from backend options (TaskFlow's names accepted)."""
    kwargs: dict[str, Any] = {}
    aliases = {
        "pool_size": "pool_size",
        "max_pool_size": "pool_size",
        "max_overflow": "max_overflow",
        "pool_timeout": "pool_timeout",
        "pool_recycle": "pool_recycle",
        "idle_timeout": "pool_recycle",
        "echo": "echo",
        "connection_debug": "echo",
        "pool_pre_ping": "pool_pre_ping",
    }
    for key, value in options.items():
        if key in aliases:
            kwargs[aliases[key]] = value
        elif key not in ("busy_timeout", "connect_timeout"):
            known = ", ".join(sorted([*aliases, "busy_timeout", "connect_timeout"]))
            raise ConfigurationError(f"Unknown logbook backend option {key!r}; known: {known}")
    if "echo" in kwargs:
        kwargs["echo"] = bool(kwargs["echo"])
    if "pool_pre_ping" in kwargs:  # URL query values arrive as strings
        kwargs["pool_pre_ping"] = str(kwargs["pool_pre_ping"]).lower() not in ("0", "false", "no", "off", "")
    return kwargs


class SQLAlchemyBackend(Backend):
    """A logbook in SQLite, PostgreSQL or MySQL/MariaDB. Build it with ``backends.fetch``.

    Args:
        url: the database URL as configured.
        auto_migrate: upgrade the schema on first use (else only check it).
        options: engine options (``pool_size``, ``busy_timeout`` ...; see ``engine_kwargs``).
        on_close: called by :meth:`close` (the ``fetch`` cache forgets the backend).
    """

    def __init__(
        self,
        url: str,
        *,
        auto_migrate: bool = True,
        options: Mapping[str, Any] | None = None,
        on_close: Callable[[Backend], None] | None = None,
    ) -> None:
        self.url = BackendURL(url)
        self.auto_migrate = auto_migrate
        self._on_close = on_close
        try:
            self._engine = self._create_engine(url, dict(options or {}))
        except (NoSuchModuleError, ImportError) as exc:
            raise StorageFailure(
                f"The driver for {self.url.masked} is not installed ({exc}): pip install 'celeryflow[postgres]' "
                "(psycopg 3; psycopg2 works too) or 'celeryflow[mysql]' (PyMySQL)"
            ) from exc
        self._readonly_engine = self._engine.execution_options(**{READONLY: True})
        self._autocommit_engine: Engine | None = None
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._readonly_sessions = sessionmaker(self._readonly_engine, expire_on_commit=False)
        rows.listen(self._sessions)
        self._serial = self._new_serial_lock()
        database = self._engine.url.database
        self._write_lock = (
            SQLiteWriteLock(database)
            if self._engine.dialect.name == "sqlite" and database and database != ":memory:"
            and not self._engine.url.query.get("uri")
            else None
        )
        self._ready = False
        self._ready_lock = threading.Lock()
        self._closed = False

    def _create_engine(self, raw_url: str, options: dict[str, Any]) -> Engine:
        url = normalize_url(raw_url)
        kwargs = engine_kwargs(options)
        name = url.get_backend_name()
        if name == "sqlite":
            busy_timeout = float(options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT))
            if url.database and not url.query.get("uri"):
                try:
                    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
                except OSError:
                    pass  # SQLite's own "unable to open" error says it better, at first use
            engine = create_engine(url, connect_args={"timeout": busy_timeout}, **kwargs)
            install_sqlite_events(engine, busy_timeout, wal=True)
            return engine
        connect_args = {"connect_timeout": int(options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))}
        if name in ("mysql", "mariadb"):
            kwargs.setdefault("pool_recycle", 3600)  # under the server's default wait_timeout
        return create_engine(url, isolation_level="READ COMMITTED", connect_args=connect_args, **kwargs)

    def _new_serial_lock(self) -> AbstractContextManager[Any]:
        """What every transaction holds: nothing here; the database serializes."""
        return nullcontext()

    def _writer(self, readonly: bool) -> AbstractContextManager[Any]:
        """What a write transaction holds besides: the machine-wide write lock of an SQLite file."""
        return self._write_lock if self._write_lock is not None and not readonly else nullcontext()

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def connect(self, *, readonly: bool = False) -> Iterator[SAConnection]:
        """A raw connection for administration (migrations); no schema check, no retries.

        Args:
            readonly: on SQLite, begin deferred (no write lock) transactions.
        """
        self._check_open()
        engine = self._readonly_engine if readonly else self._engine
        try:
            with self._serial, engine.connect() as conn:
                yield conn
        except DRIVER_ERRORS as exc:
            raise StorageFailure(describe(exc, self.url.masked)) from exc

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        self._ensure_ready()
        try:
            with self._session(readonly) as session:
                yield session
        except DRIVER_ERRORS as exc:
            raise StorageFailure(describe(exc, self.url.masked)) from exc

    def run(self, fn: Callable[[Session], T], *, attempts: int = 5, readonly: bool = False) -> T:
        def once(phase: list[str]) -> T:
            with self._session(readonly) as session:
                result = fn(session)
                phase[0] = "commit"  # the block's exit commits
                return result

        return self._retrying(once, attempts)

    def run_core(self, fn: Callable[[SAConnection], T], *, attempts: int = 5, readonly: bool = False) -> T:
        engine = self._readonly_engine if readonly else self._engine

        def once(phase: list[str]) -> T:
            with self._serial, self._writer(readonly), engine.begin() as conn:
                result = fn(conn)
                phase[0] = "commit"
                return result

        return self._retrying(once, attempts)

    def run_autocommit(self, fn: Callable[[SAConnection], T], *, attempts: int = 5) -> T:
        """Run ``fn`` on a connection in autocommit mode: each statement is its own transaction.

        For one-statement transactions (PostgreSQL's claim CTE, runtime/fastpath_pg.py): no
        BEGIN and no COMMIT round trip. Not on SQLite, whose writers need BEGIN IMMEDIATE.
        """
        if self._autocommit_engine is None:
            self._autocommit_engine = self._engine.execution_options(isolation_level="AUTOCOMMIT")
        engine = self._autocommit_engine

        def once(phase: list[str]) -> T:
            with self._serial, engine.connect() as conn:
                phase[0] = "commit"  # every statement commits as it runs
                return fn(conn)

        return self._retrying(once, attempts)

    def _retrying(self, once: Callable[[list[str]], T], attempts: int) -> T:
        self._ensure_ready()
        attempt = 1
        while True:
            phase = ["work"]
            try:
                return once(phase)
            except DRIVER_ERRORS as exc:
                transient = is_transient(exc)
                if attempt >= attempts or not transient:
                    tries = attempt if transient else 1
                    raise StorageFailure(describe(exc, self.url.masked, attempts=tries)) from exc
                delay = backoff(attempt)
                # A connection lost during COMMIT leaves the outcome unknown: the transaction
                # runs again, and recognises its own earlier commit if there was one.
                uncertain = phase[0] == "commit" and getattr(exc, "connection_invalidated", False)
                LOG.warning(
                    "celeryflow logbook %s: transient failure%s (attempt %d of %d), retrying in %.2fs: %s",
                    self.url.masked,
                    " during COMMIT (it may have gone through)" if uncertain else "",
                    attempt,
                    attempts,
                    delay,
                    getattr(exc, "orig", exc),
                )
                time.sleep(delay)
                attempt += 1

    def lock_flow(self, session: Session, flow_uuid: str, *, shared: bool = False) -> FlowState | None:
        return rows.lock_flow(session, flow_uuid, shared=shared)

    def upgrade(self) -> None:
        with self._ready_lock:
            migrate.upgrade(self)
            self._ready = True

    def dispose(self) -> None:
        self._engine.dispose()

    def close(self) -> None:
        self._closed = True
        self._engine.dispose()
        if self._on_close is not None:
            self._on_close(self)

    def after_fork(self) -> None:
        """In a forked child: drop the parent's pooled connections without closing them.

        Sockets shared with the parent must not be used (or closed: that would
        disturb the parent's sessions); the child opens its own.
        """
        self._engine.dispose(close=False)
        self._ready_lock = threading.Lock()
        if self._write_lock is not None:
            self._write_lock.after_fork()

    @contextmanager
    def _session(self, readonly: bool) -> Iterator[Session]:
        maker = self._readonly_sessions if readonly else self._sessions
        with self._serial, self._writer(readonly), maker.begin() as session:
            yield session

    def _ensure_ready(self) -> None:
        self._check_open()
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                if self.auto_migrate:
                    migrate.upgrade(self)
                else:
                    migrate.check(self)
                self._ready = True

    def _check_open(self) -> None:
        if self._closed:
            raise BackendClosed(f"The logbook backend {self.url.masked} was closed: fetch() a new one")


__all__ = [
    "DRIVER_ERRORS", "SQLAlchemyBackend", "backoff", "describe", "is_transient", "normalize_url", "postgres_scheme",
]
