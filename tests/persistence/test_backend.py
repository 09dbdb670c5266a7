"""The backend: fetch and its cache, transactions, retries, row locks, errors, fork safety."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from celeryflow.exceptions import ConfigurationError, StorageFailure
from celeryflow.persistence import backends
from celeryflow.persistence.backends.impl_sqlalchemy import is_transient
from celeryflow.persistence.tables import FlowRow
from tests.fixtures_db import require_service
from tests.persistence import helpers


def _locked_error() -> OperationalError:
    return OperationalError("UPDATE celeryflow_flows", {}, sqlite3.OperationalError("database is locked"))


# --------------------------------------------------------------------------- fetch


def test_fetch_caches_one_backend_per_url(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    assert backends.fetch(any_db_url) is backend
    assert backends.fetch({"connection": any_db_url}) is backend
    assert backends.fetch(backend) is backend
    assert backends.fetch(any_db_url, pool_size=3) is not backend
    backend.close()
    assert backends.fetch(any_db_url) is not backend


def test_closed_backend_says_so(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    backend.close()
    with pytest.raises(StorageFailure, match="was closed"):
        backend.get_logbooks()


def test_url_password_is_masked_in_repr() -> None:
    backend = backends.fetch("postgresql://cf:s3cret@127.0.0.1:1/db", auto_migrate=False)
    try:
        assert "s3cret" not in repr(backend)
        assert "s3cret" not in repr(backend.url)
        assert "***" in backend.url.masked
        assert str(backend.url) == "postgresql://cf:s3cret@127.0.0.1:1/db"  # usable by other processes
        assert backend.engine.dialect.driver == "psycopg"
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("url", "dialect", "driver"),
    [
        ("postgres://u@h/db", "postgresql", "psycopg"),
        ("mysql://u@h/db", "mysql", "pymysql"),
        ("mariadb://u@h/db", "mariadb", "pymysql"),
        ("mysql+pymysql://u@h/db", "mysql", "pymysql"),
        ("sqlite:///x.db", "sqlite", "pysqlite"),
    ],
)
def test_urls_choose_celeryflows_drivers(url: str, dialect: str, driver: str) -> None:
    backend = backends.fetch(url, auto_migrate=False)
    try:
        assert (backend.engine.dialect.name, backend.engine.dialect.driver) == (dialect, driver)
        if dialect != "sqlite":
            assert backend.engine.url.query.get("charset", "utf8mb4") == "utf8mb4"
    finally:
        backend.close()


@pytest.mark.parametrize("url", ["oracle://u@h/db", "not a url", ""])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises((StorageFailure, ConfigurationError), match="logbook"):
        backends.fetch(url)


def test_unknown_option_is_refused(sqlite_url: str) -> None:
    with pytest.raises(ConfigurationError, match="pool_sise"):
        backends.fetch({"connection": sqlite_url, "pool_sise": 3})


def test_taskflow_style_conf(sqlite_url: str) -> None:
    backend = backends.fetch({"connection": sqlite_url, "max_pool_size": 2, "auto_migrate": False})
    assert backend.auto_migrate is False
    with backend.get_connection() as conn:
        conn.upgrade()
        conn.validate()
        assert list(conn.get_logbooks()) == []


# ----------------------------------------------------------------------- transactions


def test_transaction_commits_and_rolls_back(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    fd = helpers.make_flow(backend)
    with backend.transaction() as session:
        row = backend.lock_flow(session, fd.uuid)
        assert row is not None
        row.owner = "committed"
    with pytest.raises(ValueError), backend.transaction() as session:
        row = backend.lock_flow(session, fd.uuid)
        assert row is not None
        row.owner = "rolled back"
        session.flush()
        raise ValueError("boom")
    with backend.transaction(readonly=True) as session:
        assert session.get(FlowRow, fd.uuid).owner == "committed"  # type: ignore[union-attr]
    with backend.transaction() as session:
        assert backend.lock_flow(session, "no-such-flow") is None


def test_lock_flow_reads_the_database_not_the_sessions_earlier_read(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    fd = helpers.make_flow(backend)
    with backend.transaction() as session:
        earlier = session.get(FlowRow, fd.uuid)
        assert earlier is not None and earlier.owner != "other"
        change = text("UPDATE celeryflow_flows SET owner = 'other'")
        if backend.engine.dialect.name == "sqlite":
            session.execute(change)  # SQL behind the ORM's back (SQLite: one writer at a time)
        else:
            with backend.engine.connect() as other:  # another transaction commits meanwhile
                other.execute(change)
                other.commit()
        locked = backend.lock_flow(session, fd.uuid)
        assert locked is not None and locked.owner == "other"


def test_lock_flow_makes_a_second_writer_wait_for_the_first(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    fd = helpers.make_flow(backend)
    order: list[str] = []
    a_locked, release_a, b_done = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with backend.transaction() as session:
            row = backend.lock_flow(session, fd.uuid)
            assert row is not None
            row.owner = "A"
            session.flush()
            order.append("A locked")
            a_locked.set()
            assert release_a.wait(60)
            order.append("A commits")

    def second() -> None:
        assert a_locked.wait(60)
        with backend.transaction() as session:
            row = backend.lock_flow(session, fd.uuid)
            assert row is not None
            order.append(f"B locked, saw {row.owner}")
        b_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert a_locked.wait(60)
    if backend.engine.dialect.name in ("postgresql", "mysql", "mariadb"):
        helpers.wait_until(lambda: helpers.lock_waiters(backend) >= 1, what="B to wait for the row lock")
    # B must still be blocked while A holds the lock (a bounded check for absence, not a sync)
    assert not b_done.wait(0.5)
    release_a.set()
    for thread in threads:
        thread.join(60)
    assert order == ["A locked", "A commits", "B locked, saw A"]


def test_shared_locks_do_not_block_each_other(db_url: str) -> None:
    backend = backends.fetch(db_url)
    fd = helpers.make_flow(backend)
    a_locked, b_locked = threading.Event(), threading.Event()

    def first() -> None:
        with backend.transaction(readonly=True) as session:
            assert backend.lock_flow(session, fd.uuid, shared=True) is not None
            a_locked.set()
            assert b_locked.wait(60)  # B got its shared lock while A still holds one

    def second() -> None:
        assert a_locked.wait(60)
        with backend.transaction(readonly=True) as session:
            assert backend.lock_flow(session, fd.uuid, shared=True) is not None
            b_locked.set()

    errors = helpers.run_threads(2, lambda i: (first, second)[i]())
    assert errors == []


def test_a_shared_lock_holds_off_writers_on_servers(db_url: str) -> None:
    backend = backends.fetch(db_url)
    if backend.engine.dialect.name == "sqlite":
        pytest.skip("SQLite has no row locks: readers never block the (single) writer in WAL mode")
    fd = helpers.make_flow(backend)
    statements: list[str] = []
    a_locked, release_a, b_done = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with backend.transaction(readonly=True) as session:
            assert backend.lock_flow(session, fd.uuid, shared=True) is not None
            a_locked.set()
            assert release_a.wait(60)

    def second() -> None:
        assert a_locked.wait(60)
        with backend.transaction() as session:
            assert backend.lock_flow(session, fd.uuid) is not None
        b_done.set()

    def capture(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(backend.engine, "before_cursor_execute", capture)
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    helpers.wait_until(lambda: helpers.lock_waiters(backend) >= 1, what="the writer to wait")
    assert not b_done.is_set()
    release_a.set()
    for thread in threads:
        thread.join(60)
    event.remove(backend.engine, "before_cursor_execute", capture)
    assert b_done.is_set()
    shared = "FOR SHARE" if backend.engine.dialect.name == "postgresql" else "LOCK IN SHARE MODE"
    assert any(shared in s for s in statements)


def test_concurrent_read_modify_write_loses_nothing(any_db_url: str) -> None:
    # SQLite: BEGIN IMMEDIATE means no "database is locked" from read->write lock upgrades
    # (attempts=1: not one retry allowed). Servers: FOR UPDATE means no lost update.
    backend = backends.fetch(any_db_url)
    fd = helpers.make_flow(backend)
    per_thread = 20

    def work(_: int) -> None:
        for _ in range(per_thread):
            backend.run(lambda s: helpers.bump(backend, s, fd.uuid), attempts=1)

    assert helpers.run_threads(6, work) == []
    assert backend.run(lambda s: s.get(FlowRow, fd.uuid).outstanding) == 6 * per_thread  # type: ignore[union-attr]


@pytest.mark.slow
def test_concurrent_writers_in_several_processes(db_url: str) -> None:
    backend = backends.fetch(db_url)
    fd = helpers.make_flow(backend)
    ctx = multiprocessing.get_context("spawn")
    count, times = 4, 15
    barrier, results = ctx.Barrier(count), ctx.Queue()
    procs = [
        ctx.Process(target=helpers.increment_in_process, args=(db_url, fd.uuid, times, barrier, results))
        for _ in range(count)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(60)
    assert outcomes == [("ok", None)] * count
    assert backend.run(lambda s: s.get(FlowRow, fd.uuid).outstanding) == count * times  # type: ignore[union-attr]


def test_sqlite_readonly_transactions_do_not_take_the_write_lock(sqlite_url: str) -> None:
    backend = backends.fetch(sqlite_url, busy_timeout=0.1)
    fd = helpers.make_flow(backend)
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        assert backend.run(lambda s: s.get(FlowRow, fd.uuid) is not None, readonly=True, attempts=1)
        with pytest.raises(StorageFailure, match="locked"):
            backend.run(lambda s: helpers.bump(backend, s, fd.uuid), attempts=1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_sqlite_pragmas(sqlite_url: str) -> None:
    backend = backends.fetch(sqlite_url)
    with backend.transaction() as session:
        pragmas = {
            name: session.execute(text(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        }
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 1, "busy_timeout": 30000}


def test_server_isolation_is_read_committed(db_url: str) -> None:
    backend = backends.fetch(db_url)
    if backend.engine.dialect.name == "sqlite":
        pytest.skip("SQLite is serializable")
    with backend.engine.connect() as conn:
        assert conn.get_isolation_level() == "READ COMMITTED"


# ---------------------------------------------------------------------------- retries


def test_run_retries_a_dropped_connection_or_lock(any_db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # Another test may have configured logging (Django/Flower dictConfig disables existing loggers).
    logger = logging.getLogger("celeryflow.persistence.backends.impl_sqlalchemy")
    logger.disabled = False
    logger.propagate = True
    caplog.set_level(logging.WARNING, logger=logger.name)
    backend = backends.fetch(any_db_url, busy_timeout=0.1)
    fd = helpers.make_flow(backend)
    dialect = backend.engine.dialect.name
    calls: list[int] = []
    holder: sqlite3.Connection | None = None
    if dialect == "sqlite" and not any_db_url.startswith("memory://"):
        holder = sqlite3.connect(any_db_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock

    def fn(session: Session) -> int:
        calls.append(1)
        if len(calls) == 1:
            _break_first_attempt(backend, session, dialect, memory=any_db_url.startswith("memory://"))
        elif holder is not None:
            holder.execute("ROLLBACK")  # the other process lets go before the retry
        helpers.bump(backend, session, fd.uuid)
        return len(calls)

    try:
        assert backend.run(fn) == 2
    finally:
        if holder is not None:
            holder.close()
    assert [r.message for r in caplog.records if "transient failure (attempt 1 of 5)" in r.message]
    assert backend.run(lambda s: s.get(FlowRow, fd.uuid).outstanding) == 1  # type: ignore[union-attr]


def _break_first_attempt(backend: backends.Backend, session: Session, dialect: str, memory: bool) -> None:
    if dialect == "postgresql":
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
        with backend.engine.connect() as admin:
            # the timeout argument makes it wait until the backend is really gone
            admin.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})
            admin.commit()
    elif dialect in ("mysql", "mariadb"):
        conn_id = session.execute(text("SELECT CONNECTION_ID()")).scalar()
        with backend.engine.connect() as admin:
            admin.execute(text(f"KILL {int(conn_id)}"))  # type: ignore[arg-type]
    elif memory:
        raise _locked_error()  # one connection in one process: nothing else can lock it
    # the statement that runs into the dead connection or the held write lock
    session.execute(text("UPDATE celeryflow_flows SET owner = 'first attempt'"))


def test_run_gives_up_after_bounded_attempts(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    calls: list[int] = []

    def always_locked(session: Session) -> None:
        calls.append(1)
        raise _locked_error()

    with pytest.raises(StorageFailure, match="3 times") as caught:
        backend.run(always_locked, attempts=3)
    assert len(calls) == 3
    assert isinstance(caught.value.__cause__, OperationalError)


def test_run_does_not_retry_real_errors(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    fd = helpers.make_flow(backend)
    calls: list[int] = []

    def duplicate(session: Session) -> None:
        calls.append(1)
        session.add(FlowRow(uuid=fd.uuid, name="dup", state="PENDING"))
        session.flush()

    with pytest.raises(StorageFailure):
        backend.run(duplicate)
    assert len(calls) == 1

    def user_error(session: Session) -> None:
        calls.append(1)
        raise KeyError("mine")

    with pytest.raises(KeyError):
        backend.run(user_error)
    assert len(calls) == 2


def test_connect_failures_are_not_transient() -> None:
    refused = OperationalError(None, None, Exception("connection refused"))
    assert not is_transient(refused)
    assert is_transient(_locked_error())
    assert not is_transient(ValueError("x"))


# ----------------------------------------------------------------------------- errors


def _unreachable_cases() -> list[Any]:
    return [
        pytest.param("postgresql://cf:s3cret@127.0.0.1:1/test", "Cannot connect", id="postgresql-port"),
        pytest.param("mysql://cf:s3cret@127.0.0.1:1/test", "Cannot connect", id="mariadb-port"),
        pytest.param(
            "postgresql://postgres@127.0.0.1:5432/cf_no_such_db",
            "does not exist",
            id="postgresql-db",
            marks=pytest.mark.services,
        ),
        pytest.param(
            "mysql://root@127.0.0.1:3306/cf_no_such_db",
            "does not exist",
            id="mariadb-db",
            marks=pytest.mark.services,
        ),
        pytest.param("sqlite:////proc/cf-no-such-dir/logbook.db", "directory exists", id="sqlite-dir"),
    ]


@pytest.mark.parametrize(("url", "message"), _unreachable_cases())
def test_unreachable_database_gives_a_helpful_storage_failure(url: str, message: str) -> None:
    if "5432" in url:
        require_service("PostgreSQL", "127.0.0.1", 5432)
    if "3306" in url:
        require_service("MariaDB", "127.0.0.1", 3306)
    backend = backends.fetch(url)
    try:
        with pytest.raises(StorageFailure, match=message) as caught:
            backend.get_logbooks()
        text_ = str(caught.value)
        assert backend.url.masked in text_
        assert "s3cret" not in text_
        assert caught.value.__cause__ is not None
    finally:
        backend.close()


# ------------------------------------------------------------------------------- fork


def _use_after_fork(backend: backends.Backend, results: Any) -> None:
    try:
        checkedin = getattr(backend.engine.pool, "checkedin", None)  # StaticPool (memory://) has none
        results.put(("pool after fork", checkedin() if checkedin else None))
        results.put(("flows", len(backend.list_flows())))
        results.put(("done", None))
    except Exception as exc:
        results.put(("error", repr(exc)))


def _fork_check(url: str) -> None:
    """Body of the fork test, run in a fresh interpreter (see below)."""
    backend = backends.fetch(url)
    helpers.make_flow(backend)
    assert backend.list_flows()  # the parent's pool now holds a connection
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_use_after_fork, args=(backend, results))
    child.start()
    got = [results.get(timeout=60)]
    while got[-1][0] not in ("done", "error"):
        got.append(results.get(timeout=60))
    child.join(60)
    # memory:// keeps its one connection: the child's copy of the data lives in it
    pooled = None if url.startswith("memory://") else 0
    assert got == [("pool after fork", pooled), ("flows", 1), ("done", None)], got
    assert len(backend.list_flows()) == 1  # the parent's connections were left intact


def test_forked_child_uses_its_own_connections(any_db_url: str) -> None:
    # Fork from a fresh interpreter: this test process runs other tests' threads (embedded
    # workers, heartbeats), and forking a process with busy threads may copy a held lock.
    code = f"from tests.persistence.test_backend import _fork_check; _fork_check({any_db_url!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          cwd=str(Path(__file__).resolve().parents[2]))
    assert done.returncode == 0, done.stdout + done.stderr
