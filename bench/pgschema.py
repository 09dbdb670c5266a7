"""A private PostgreSQL schema for one benchmark run, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from celeryflow.persistence import backends

DEFAULT_URL = os.environ.get("CELERYFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def private_schema(postgres_url: str, prefix: str) -> Iterator[str]:
    """Create schema ``<prefix>_<random>``; yield a logbook URL whose search_path is that schema."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = (make_url(postgres_url).set(drivername="postgresql")
           .update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False))
    try:
        yield url
    finally:
        backends.close_all(url)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()
