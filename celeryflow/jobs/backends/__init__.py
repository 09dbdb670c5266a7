"""Jobboards (TaskFlow's ``taskflow.jobs.backends``): ``fetch(name, conf)`` returns a board.

::

    from celeryflow.jobs import backends as job_backends

    with job_backends.fetch("deploys", {"board": "sql", "url": "postgresql://db/app"}) as board:
        board.post_flow(make_deploy_flow, store={"release": "1.2"})

    board = job_backends.fetch("deploys", {"board": "redis", "url": "redis://cache:6379/2",
                                           "claim_expiry": 30}, persistence="postgresql://db/app")

``conf`` keys: ``board`` (``"sql"``, the default, or ``"redis"``), ``url``,
``namespace`` (several boards in one database or Redis), ``claim_expiry``
(seconds, default 60; ``0``: claims never expire). See ``docs/jobs.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from celeryflow.exceptions import ConfigurationError, UnknownJobBoard
from celeryflow.jobs.backends.base import DEFAULT_CLAIM_EXPIRY, JobBoard
from celeryflow.jobs.backends.impl_redis import RedisJobBoard
from celeryflow.jobs.backends.impl_sql import SQLJobBoard
from celeryflow.jobs.job import Job, JobPriority, TrashedJob

BOARDS: dict[str, type[JobBoard]] = {
    "sql": SQLJobBoard,
    "sqlalchemy": SQLJobBoard,
    "redis": RedisJobBoard,
}


def fetch(name: str, conf: Mapping[str, Any] | str, persistence: Any = None) -> JobBoard:
    """A jobboard (not yet connected: call ``connect()`` or use it as a context manager).

    Args:
        name: the board's name (also its default namespace).
        conf: a dict (see the module docs), or a URL (``redis://…`` picks the Redis board,
            anything else the SQL board).
        persistence: the logbook (URL or backend) for ``post_flow`` and conductors.

    Raises:
        ConfigurationError: unknown ``board`` kind or unusable conf.
    """
    if isinstance(conf, str):
        conf = {"board": "redis" if conf.startswith(("redis://", "rediss://")) else "sql", "url": conf}
    if not isinstance(conf, Mapping):
        raise ConfigurationError(f"Jobboard conf must be a dict such as {{'board': 'sql', 'url': ...}}, not {conf!r}")
    kind = str(conf.get("board") or "sql").lower()
    cls = BOARDS.get(kind)
    if cls is None:
        raise UnknownJobBoard(f"Unknown jobboard {kind!r}: use one of {', '.join(sorted(BOARDS))}")
    return cls(name, conf, persistence=persistence)


@contextmanager
def backend(name: str, conf: Mapping[str, Any] | str, persistence: Any = None) -> Iterator[JobBoard]:
    """A connected board that is closed when the ``with`` block ends (TaskFlow's ``backend``).

    ::

        with job_backends.backend("deploys", {"board": "sql", "url": url}) as board:
            board.post("deploy", book)
    """
    board = fetch(name, conf, persistence=persistence)
    board.connect()
    try:
        yield board
    finally:
        board.close()


__all__ = [
    "BOARDS",
    "DEFAULT_CLAIM_EXPIRY",
    "Job",
    "JobBoard",
    "JobPriority",
    "RedisJobBoard",
    "SQLJobBoard",
    "TrashedJob",
    "backend",
    "fetch",
]
