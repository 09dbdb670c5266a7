"""Alembic environment for the celeryflow logbook.

celeryflow runs Alembic programmatically (:mod:`celeryflow.persistence.migrate`),
handing over a connection that is already inside the migration transaction and
holds the migration lock; this script only binds that connection. Offline mode
(``--sql``) renders the DDL for ``sqlalchemy.url`` instead.
"""

from __future__ import annotations

from alembic import context

from celeryflow.persistence.migrate import VERSION_TABLE
import celeryflow.jobs.backends.sql_tables  # noqa: F401  (registers the job tables on Base.metadata)
from celeryflow.persistence.tables import Base

config = context.config


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "celeryflow migrations run through celeryflow: use `celeryflow db upgrade` "
            "or celeryflow.persistence.migrate.upgrade(backend), not the alembic command"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        # SQLite alters tables by copying them; batch mode lets later revisions do that.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
