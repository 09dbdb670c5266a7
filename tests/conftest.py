"""Shared pytest set-up.

Fixtures live in plugin modules by area so that each area can grow its own:

* ``tests.fixtures_services``: is Redis/RabbitMQ/PostgreSQL/MariaDB up? skip locally,
  fail in CI (``CI=true``); a private Redis db / key prefix per test.
* ``tests.fixtures_db``: a fresh logbook database URL per test (SQLite file,
  PostgreSQL schema, MariaDB database), parametrized over backends.
* ``tests.fixtures_celery``: Celery apps and workers (in-process and separate processes).
"""

pytest_plugins = [
    "celery.contrib.pytest",
    "tests.fixtures_services",
    "tests.fixtures_db",
    "tests.fixtures_celery",
]
