"""The job tables: Alembic's head creates exactly tables.py's metadata plus the jobboard's tables."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Text, inspect
from sqlalchemy.dialects import mysql

import celeryflow.jobs.backends.sql_tables  # noqa: F401  (registers the job tables on Base.metadata)
from celeryflow.persistence import backends, migrate
from celeryflow.persistence.tables import Base

JOB_TABLES = {"celeryflow_jobs", "celeryflow_jobs_trash"}


def _compare_type(context: MigrationContext, inspected: Any, metadata: Any, inspected_type: Any,
                  metadata_type: Any) -> bool | None:
    # Alembic does not resolve Text().with_variant(..., "mysql", "mariadb"): LONGTEXT vs Text is no change
    if isinstance(inspected_type, mysql.LONGTEXT) and isinstance(metadata_type, Text):
        return False
    return None


def _diff(backend: backends.Backend) -> list[object]:
    with backend.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": _compare_type,
            "include_name": lambda name, type_, parent: type_ != "table" or name != migrate.VERSION_TABLE,
        })
        return list(compare_metadata(context, Base.metadata))


def test_head_creates_the_job_tables_exactly(db_url: str) -> None:
    backend = backends.fetch(db_url, auto_migrate=False)
    backend.upgrade()
    assert migrate.current(backend) == migrate.head() == "0006"
    with backend.connect() as conn:
        names = set(inspect(conn).get_table_names())
    assert JOB_TABLES <= names
    assert set(Base.metadata.tables) | {migrate.VERSION_TABLE} == names
    assert _diff(backend) == []


def test_job_tables_downgrade_and_upgrade_again(db_url: str) -> None:
    backend = backends.fetch(db_url)
    backend.upgrade()
    migrate.downgrade(backend, "0001")
    with backend.connect() as conn:
        names = set(inspect(conn).get_table_names())
    assert not JOB_TABLES & names and "celeryflow_flows" in names
    migrate.upgrade(backend)
    assert migrate.current(backend) == migrate.head()
    assert _diff(backend) == []
