"""A private logbook per test: an SQLite file, or a fresh schema / database on a server.

:func:`private_logbook` takes the URL of a server database the tests may create in
(PostgreSQL: a schema in it; MariaDB/MySQL: a database beside it) or a directory for an
SQLite file, and yields the URL of a logbook nobody else uses, dropped afterwards with
every backend that was opened on it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from celeryflow.exceptions import ConfigurationError
from celeryflow.persistence import backends


def unique_name() -> str:
    """A fresh database/schema name: lower case (MySQL on some OSes folds case), under 64 chars."""
    return f"cf_{uuid.uuid4().hex[:16]}"


@contextlib.contextmanager
def sqlite_logbook(directory: str | os.PathLike[str]) -> Iterator[str]:
    """``sqlite:///<directory>/logbook.db``, its backends closed after."""
    url = f"sqlite:///{os.path.join(directory, 'logbook.db')}"
    try:
        yield url
    finally:
        backends.close_all(url)


@contextlib.contextmanager
def postgres_logbook(server: str | URL) -> Iterator[str]:
    """A fresh schema in the PostgreSQL database ``server`` names; the yielded URL's connections use it."""
    base = make_url(server).set(drivername="postgresql+psycopg")
    schema = unique_name()
    admin = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = base.set(drivername="postgresql").update_query_dict({"options": f"-csearch_path={schema}"})
    text = url.render_as_string(hide_password=False)
    try:
        yield text
    finally:
        backends.close_all(text)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@contextlib.contextmanager
def mariadb_logbook(server: str | URL) -> Iterator[str]:
    """A fresh database on the MariaDB/MySQL server ``server`` names (its user may create databases)."""
    base = make_url(server).set(drivername="mysql+pymysql")
    database = unique_name()
    admin = create_engine(base, poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    text = base.set(database=database).render_as_string(hide_password=False)
    try:
        yield text
    finally:
        backends.close_all(text)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{database}`")
        admin.dispose()


@contextlib.contextmanager
def private_logbook(server: str | None, directory: str | os.PathLike[str]) -> Iterator[str]:
    """A logbook for one test: SQLite in ``directory`` when ``server`` is None (or ``sqlite``).

    Args:
        server: None/``"sqlite"``, or a ``postgresql://`` / ``mysql://`` / ``mariadb://`` URL
            of a database the test user may create schemas (PostgreSQL) or databases in.
        directory: where the SQLite file goes (the test's ``tmp_path``).

    Raises:
        ConfigurationError: the URL names a database kind that has no private variant here.
    """
    if not server or server == "sqlite":
        with sqlite_logbook(directory) as url:
            yield url
        return
    kind = make_url(server).get_backend_name()
    if kind == "postgresql":
        with postgres_logbook(server) as url:
            yield url
    elif kind in ("mysql", "mariadb"):
        with mariadb_logbook(server) as url:
            yield url
    else:
        raise ConfigurationError(
            f"--celeryflow-logbook {server!r}: give a postgresql:// or mysql+pymysql:// URL of a server database "
            "the tests may create schemas or databases in (or leave it out for an SQLite file per test)"
        )
