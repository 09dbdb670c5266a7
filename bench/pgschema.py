"""A private PostgreSQL schema for one benchmark run, dropped afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from celeryflow.testing.databases import postgres_logbook

DEFAULT_URL = os.environ.get("CELERYFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def private_schema(postgres_url: str, prefix: str) -> Iterator[str]:
    """A fresh schema (celeryflow.testing's); yield a logbook URL whose search_path is that schema.

    ``prefix`` is kept for callers; the schema is named like the test suite's private ones.
    """
    with postgres_logbook(postgres_url) as url:
        yield url
