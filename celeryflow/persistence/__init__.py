"""The logbook: where every flow, atom state, result and failure is recorded.

* :mod:`celeryflow.persistence.backends`: ``fetch(url)`` → a backend (SQLite,
  PostgreSQL, MySQL/MariaDB, ``memory://``) with transactions, retries, row
  locks and TaskFlow's logbook API.
* :mod:`celeryflow.persistence.models`: ``LogBook``, ``FlowDetail``,
  ``TaskDetail``, ``RetryDetail`` (TaskFlow's ``persistence.models``).
* :mod:`celeryflow.persistence.tables`: the schema (SQLAlchemy ORM).
* :mod:`celeryflow.persistence.migrate`: its Alembic migrations.
"""

from __future__ import annotations
