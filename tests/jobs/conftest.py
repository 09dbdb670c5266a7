"""Jobboard fixtures: one suite over the SQL board (SQLite, PostgreSQL, MariaDB) and the Redis board."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from celeryflow.jobs import backends as job_backends
from celeryflow.jobs.backends.base import JobBoard

BOARD_PARAMS = [
    pytest.param("sql-sqlite", id="sql-sqlite"),
    pytest.param("sql-postgresql", id="sql-postgresql", marks=pytest.mark.services),
    pytest.param("sql-mariadb", id="sql-mariadb", marks=pytest.mark.services),
    pytest.param("redis", id="redis", marks=pytest.mark.services),
]
_SQL_FIXTURE = {"sql-sqlite": "sqlite_url", "sql-postgresql": "postgres_url", "sql-mariadb": "mariadb_url"}

MakeBoard = Callable[..., JobBoard]


@pytest.fixture
def logbook_url(tmp_path: Path) -> str:
    """An SQLite logbook for flows posted to a Redis board (and for conductor tests)."""
    return f"sqlite:///{tmp_path / 'flows.db'}"


@pytest.fixture(params=BOARD_PARAMS)
def board_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_board(board_kind: str, request: pytest.FixtureRequest, logbook_url: str) -> Iterator[MakeBoard]:
    """``make_board(**conf)``: a connected board on this test's storage (every call: another client of
    the same board, as another process would have); closed after the test."""
    made: list[JobBoard] = []
    if board_kind == "redis":
        base: dict[str, Any] = {"board": "redis", "url": request.getfixturevalue("redis_url"),
                                "namespace": request.getfixturevalue("redis_prefix") + "board"}
        persistence: str | None = logbook_url
    else:
        base = {"board": "sql", "url": request.getfixturevalue(_SQL_FIXTURE[board_kind])}
        persistence = None

    def make(name: str = "test-board", **conf: Any) -> JobBoard:
        board = job_backends.fetch(name, {**base, **conf}, persistence=persistence)
        board.connect()
        made.append(board)
        return board

    yield make
    for board in made:
        board.close()


@pytest.fixture
def board(make_board: MakeBoard) -> JobBoard:
    return make_board()
