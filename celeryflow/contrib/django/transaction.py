"""Transactional submit for Django views.

``submit(flow, store, on_commit=True)`` inside a view's transaction:

* **Logbook in the project's database** (``CELERYFLOW_BACKEND = "django"``, or a URL
  naming the same database): the flow, its atoms and spec are written *through
  Django's own connection, in the view's transaction*, already started (RUNNING,
  its first atoms marked queued). The Celery messages are sent by a
  ``transaction.on_commit`` hook. So:

  - rollback → the flow rows roll back with the view's rows: nothing is left, nothing is sent;
  - commit → the messages go out right after;
  - the process dies (or the broker is down) between commit and send → the flow is
    RUNNING with queued atoms whose messages never left: the conductor's sweep
    finds it (lost messages, after ``CELERYFLOW_HEARTBEAT_TIMEOUT``) and sends them.

* **Logbook in another database**: one transaction cannot span two databases, so
  the flow is written and sent by the ``on_commit`` hook. A rollback leaves nothing;
  the id is known at once; but if the process dies between the view's commit and
  that write, the flow never existed (keep the logbook in the project's database
  when that matters).

``on_commit=False`` is plain :func:`celeryflow.submit` (written and sent at once,
whatever the view's transaction does later).

The engine writes through a SQLAlchemy connection that wraps Django's DB-API
connection: SQLAlchemy's commit, rollback and close are disabled on it, so
Django alone ends the transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from celeryflow.contrib.django import conf
from celeryflow.contrib.transactional import InSession as _InSession
from celeryflow.contrib.transactional import Recorder as _Recorder
from celeryflow.contrib.transactional import build as _build
from celeryflow.contrib.transactional import check_broker as _check_broker
from celeryflow.contrib.transactional import persist_and_start as _persist_and_start
from celeryflow.contrib.transactional import publish, send_after_commit
from celeryflow.contrib.transactional import start_in as _start_in
from celeryflow.exceptions import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from celeryflow.handle import FlowHandle
    from celeryflow.persistence.backends.base import Backend

LOG = logging.getLogger(__name__)

_bridges: dict[tuple[str, str], Engine] = {}
_bridges_lock = threading.Lock()


# ----------------------------------------------------------------------------- the bridge


def _bridge_engine(alias: str) -> Engine:
    """A SQLAlchemy engine whose connections are Django's connection for ``alias`` (in this thread)."""
    from django.db import connections
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    conn = connections[alias]
    if conn.vendor == "sqlite":
        dialect = "sqlite+pysqlite://"
    elif conn.vendor == "postgresql":
        dialect = "postgresql+psycopg://" if conf._django_uses_psycopg3() else "postgresql+psycopg2://"
    elif conn.vendor == "mysql":
        import importlib

        mysqldb = importlib.import_module("MySQLdb")
        dialect = "mysql+pymysql://" if "pymysql" in mysqldb.__name__ else "mysql+mysqldb://"
    else:
        raise ConfigurationError(f"celeryflow cannot share a {conn.vendor} connection")
    key = (alias, dialect)
    with _bridges_lock:
        engine = _bridges.get(key)
        if engine is None:

            sqlite = conn.vendor == "sqlite"

            def creator() -> Any:
                django_conn = connections[alias]
                django_conn.ensure_connection()
                return _TextConnection(django_conn.connection) if sqlite else django_conn.connection

            engine = create_engine(dialect, creator=creator, poolclass=NullPool)
            # Django owns the transaction and the connection: SQLAlchemy must never end either.
            engine.dialect.do_commit = lambda dbapi_connection: None  # type: ignore[method-assign]
            engine.dialect.do_rollback = lambda dbapi_connection: None  # type: ignore[method-assign]
            engine.dialect.do_close = lambda dbapi_connection: None  # type: ignore[method-assign]
            _bridges[key] = engine
        return engine


class _TextCursor:
    """Django opens SQLite with ``detect_types``, so DATETIME columns come back as datetimes
    where SQLAlchemy's SQLite dialect expects the stored text: hand it text again."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    @staticmethod
    def _row(row: Any) -> Any:
        if row is None:
            return None
        return tuple(
            v.isoformat(" ") if isinstance(v, dt.datetime) else v.isoformat() if isinstance(v, dt.date) else v
            for v in row
        )

    def fetchone(self) -> Any:
        return self._row(self._cursor.fetchone())

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self._cursor.fetchmany() if size is None else self._cursor.fetchmany(size)
        return [self._row(r) for r in rows]

    def fetchall(self) -> list[Any]:
        return [self._row(r) for r in self._cursor.fetchall()]

    def __iter__(self) -> Iterator[Any]:
        return (self._row(r) for r in self._cursor)


class _TextConnection:
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def cursor(self, *args: Any, **kwargs: Any) -> _TextCursor:
        return _TextCursor(self._connection.cursor(*args, **kwargs))


@contextmanager
def django_session(alias: str) -> Iterator[Session]:
    """An SQLAlchemy session whose statements run on Django's connection, in its current transaction."""
    from sqlalchemy.orm import Session

    engine = _bridge_engine(alias)
    with engine.connect() as connection:
        session = Session(bind=connection, autoflush=True, expire_on_commit=False)
        try:
            yield session
            session.flush()
        finally:
            session.close()


# ----------------------------------------------------------------------------- submit


def same_database(backend: Backend, alias: str) -> bool:
    """Does ``backend`` live in Django database ``alias``?"""
    from sqlalchemy.engine import make_url

    try:
        mine, theirs = make_url(str(backend.url)), make_url(conf.logbook_url_for(alias))
    except Exception:
        return False

    def key(url: Any) -> tuple[Any, ...]:
        family = url.get_backend_name()
        if family == "sqlite":
            return (family, url.database)
        return (family, url.host or url.query.get("host"), url.port or None, url.database, url.username)

    return key(mine) == key(theirs)


def submit(
    flow_or_factory: Any,
    store: Mapping[str, Any] | None = None,
    *,
    on_commit: bool | None = None,
    using: str | None = None,
    app: Any = None,
    backend: Any = None,
    factory_args: Any = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> FlowHandle:
    """Submit a flow from a Django view; with ``on_commit`` it is tied to the view's transaction.

    Args:
        flow_or_factory: a flow, or a registered flow factory (what workers can rebuild).
        store: the flow's inputs.
        on_commit: send only after the transaction of ``using`` commits (default
            ``CELERYFLOW_ON_COMMIT``, ``True``); see the module docstring.
        using: the Django database alias whose transaction counts (default: the
            logbook's alias with ``CELERYFLOW_BACKEND = "django:<alias>"``, else ``"default"``).
        app, backend: override ``CELERYFLOW_APP`` / ``CELERYFLOW_BACKEND``.

    Returns:
        A :class:`~celeryflow.FlowHandle`; ``handle.id`` is final at once. Before the
        commit, other connections cannot see the flow yet (``handle.state`` raises NotFound).

    Raises:
        BrokerUnavailable: the broker is down: nothing was written (the view decides).
        TransportNotInstalled: the broker's transport lacks a Python package (a missing extra).
        MissingDependencies, SerializationError, NotRegistered: bad input, nothing written.
    """
    from django.db import DEFAULT_DB_ALIAS, transaction

    from celeryflow.handle import FlowHandle
    from celeryflow.persistence.backends import fetch

    app = app or conf.get_app()
    real = fetch(backend if backend is not None else conf.logbook_url())
    if on_commit is None:
        on_commit = bool(conf.setting("CELERYFLOW_ON_COMMIT", True))
    if not on_commit:
        from celeryflow.handle import submit as plain_submit

        return plain_submit(flow_or_factory, store=store, app=app, backend=real, factory_args=factory_args,
                            factory_kwargs=factory_kwargs, **options)
    using = using or conf.database_alias() or DEFAULT_DB_ALIAS
    engine = _build(flow_or_factory, store, app, real, factory_args, factory_kwargs, options)
    engine.validate()  # missing inputs: raise before anything is written
    _check_broker(engine)

    if same_database(real, using):
        real.validate()  # the schema exists (migrates on first use) before Django's transaction holds locks
        with transaction.atomic(using=using), django_session(using) as session:
            bridged: Any = _InSession(real, session)
            engine.backend = bridged
            try:
                engine.prepare()
                what = _start_in(engine, bridged)
            finally:
                engine.backend = real
        transaction.on_commit(lambda: _send_after_commit(engine, what), using=using, robust=True)
    else:
        recorder: Any = _Recorder(real)
        engine.backend = recorder
        try:
            engine.prepare()  # builds the spec and the id; the write is kept for after the commit
        finally:
            engine.backend = real
        transaction.on_commit(lambda: _persist_and_start(engine, recorder.writes), using=using, robust=True)
    return FlowHandle(engine.flow_uuid, app=engine.app, backend=real, _engine=engine)


def _send_after_commit(engine: Any, what: Any) -> None:
    send_after_commit(engine, what, publish)  # this module's publish: the one tests patch


__all__ = ["django_session", "publish", "same_database", "submit"]
