"""Alembic plumbing for the logbook schema, configured in code (no ``alembic.ini``).

``upgrade(backend)`` is safe when several processes start at once: the
migration runs under a database-wide lock, and whoever gets the lock second
finds the schema already at head and does nothing.

* PostgreSQL: ``pg_advisory_xact_lock`` keyed by the current schema, released
  when the migration transaction ends.
* MySQL/MariaDB: ``GET_LOCK`` keyed by the database (DDL commits implicitly
  there, so a transaction cannot be the lock), released after the commit.
* SQLite: the migration transaction itself: the backend begins every write
  transaction with ``BEGIN IMMEDIATE``, which holds the database's single
  write lock until commit.

The version table is ``celeryflow_alembic_version``, so an application that
keeps its own Alembic history in the same database is not disturbed.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from celeryflow.exceptions import StorageFailure

if TYPE_CHECKING:
    from alembic.config import Config

    from celeryflow.persistence.backends.base import Backend

# Alembic (about 0.4 s to import) is imported only to migrate or when the quick reads below
# are unsure: checking that a schema is at head, every process start, reads the revision
# files and the version table directly.
_REVISION = re.compile(r"^revision(?:\s*:\s*str)?\s*=\s*[\"'](\w+)[\"']", re.M)
_DOWN_REVISION = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*[\"'](\w+)[\"']", re.M)

LOG = logging.getLogger(__name__)

VERSION_TABLE = "celeryflow_alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: seconds a process waits for another process's migration (MySQL GET_LOCK).
LOCK_TIMEOUT = 300
# keyed by schema: databases with one logbook per schema do not wait on each other
_PG_LOCK = "SELECT pg_advisory_xact_lock(hashtext('celeryflow-migrate:' || current_schema()))"


def config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic ``Config`` for celeryflow's migrations.

    Args:
        connection: the connection ``env.py`` migrates (the normal, online way).
        url: a database URL, for offline (``--sql``) mode when there is no connection.
    """
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head() -> str:
    """The newest revision this version of celeryflow knows."""
    quick = _quick_head()
    if quick is not None:
        return quick
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(config()).get_current_head()
    if revision is None:  # pragma: no cover - the package always ships revisions
        raise StorageFailure(f"No migrations in {MIGRATIONS_DIR}: the celeryflow installation is broken")
    return revision


def _quick_head() -> str | None:
    """The single head of the revision files, read as text (None: not exactly one found)."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found = _REVISION.search(source)
        if found is None:
            return None
        revisions.add(found.group(1))
        downs.update(m.group(1) for m in _DOWN_REVISION.finditer(source))
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def known_revisions() -> frozenset[str]:
    """Every revision this version of celeryflow knows."""
    from alembic.script import ScriptDirectory

    return frozenset(s.revision for s in ScriptDirectory.from_config(config()).walk_revisions())


def current_of(connection: Connection) -> str | None:
    """The schema revision recorded in the database (``None``: no celeryflow schema yet)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = list(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    if len(rows) <= 1:
        return rows[0] if rows else None
    from alembic.runtime.migration import MigrationContext  # several heads: Alembic's own error

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def current(backend: Backend) -> str | None:
    """The schema revision of ``backend``'s database (``None``: no celeryflow schema yet)."""
    with backend.connect(readonly=True) as conn:
        revision = current_of(conn)
        conn.rollback()  # reading the version autobegan a transaction; end it cleanly
        return revision


def check(backend: Backend) -> None:
    """Raise :class:`StorageFailure` unless the schema is exactly at :func:`head`."""
    revision = current(backend)
    if revision == head():
        return
    if revision is None:
        state = "has no celeryflow schema yet"
    elif revision in known_revisions():
        state = f"is at schema revision {revision}, older than this celeryflow's {head()}"
    else:
        raise _newer_schema(backend, revision)
    raise StorageFailure(
        f"The logbook database {backend.url!r} {state}, and automatic migration is off "
        "(CELERYFLOW_AUTO_MIGRATE=0 or auto_migrate=False). Run `celeryflow db upgrade` "
        "(or call backend.upgrade()) once, then start again"
    )


def upgrade(backend: Backend, revision: str = "head") -> None:
    """Upgrade ``backend``'s schema to ``revision`` (default: head), under the migration lock."""
    if revision == "head" and current(backend) == head():
        return  # the common case costs one small read and takes no lock
    from alembic import command

    _migrate(backend, lambda cfg: command.upgrade(cfg, revision), f"upgrade to {revision}")


def downgrade(backend: Backend, revision: str) -> None:
    """Downgrade ``backend``'s schema to ``revision`` (``"base"`` drops every celeryflow table)."""
    from alembic import command

    _migrate(backend, lambda cfg: command.downgrade(cfg, revision), f"downgrade to {revision}")


def _migrate(backend: Backend, step: Callable[[Config], None], what: str) -> None:
    from alembic.util.exc import CommandError

    with backend.connect() as conn, _migration_lock(conn):
        try:
            with conn.begin():
                # MySQL/MariaDB: GET_LOCK is per session, so it was taken before this
                # transaction; PostgreSQL takes its lock inside it (released at commit).
                if conn.dialect.name == "postgresql":
                    conn.execute(text(_PG_LOCK))
                LOG.info("celeryflow logbook %s: %s", backend.url.masked, what)
                step(config(conn))
        except CommandError as exc:
            revision = current_of(conn)
            conn.rollback()
            if revision is not None and revision not in known_revisions():
                raise _newer_schema(backend, revision) from exc
            raise StorageFailure(f"Could not {what} the logbook schema of {backend.url!r}: {exc}") from exc


@contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Hold MySQL/MariaDB's named lock around a migration (other databases lock in its transaction)."""
    if conn.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    name = "LEFT(CONCAT('celeryflow-migrate:', DATABASE()), 64)"
    got = conn.execute(text(f"SELECT GET_LOCK({name}, :timeout)"), {"timeout": LOCK_TIMEOUT}).scalar()
    conn.commit()
    if got != 1:
        raise StorageFailure(
            f"Waited {LOCK_TIMEOUT} s for another process's logbook migration to finish; "
            "check for a stuck `celeryflow db upgrade` or process holding the lock"
        )
    try:
        yield
    finally:
        try:
            conn.execute(text(f"SELECT RELEASE_LOCK({name})"))
            conn.commit()
        except DBAPIError:  # the lock dies with the session anyway
            LOG.warning("could not release the celeryflow migration lock", exc_info=True)


def _newer_schema(backend: Backend, revision: str) -> StorageFailure:
    return StorageFailure(
        f"The logbook database {backend.url!r} is at schema revision {revision!r}, which this "
        f"celeryflow does not know (its newest is {head()!r}): a newer celeryflow migrated it. "
        "Upgrade celeryflow on this host"
    )


__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "check",
    "config",
    "current",
    "current_of",
    "downgrade",
    "head",
    "upgrade",
]
