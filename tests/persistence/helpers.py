"""Helpers shared by the persistence tests (module-level so spawned processes can import them)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text, update

from celeryflow.persistence import backends, migrate, models
from celeryflow.persistence.backends.base import Backend
from celeryflow.persistence.tables import FlowRow


def make_flow(
    backend: Backend, name: str = "flow", state: str = "PENDING", atoms: int = 1
) -> models.FlowDetail:
    """Save a logbook holding one flow detail with ``atoms`` task details; return the flow as stored."""
    book = models.LogBook(f"book-{name}")
    fd = models.FlowDetail(name)
    fd.state = state
    for index in range(atoms):
        fd.add(models.TaskDetail(f"{name}-atom-{index}"))
    book.add(fd)
    return backend.save_logbook(book).find(fd.uuid) or fd


def age_flow(backend: Backend, flow_uuid: str, by: dt.timedelta) -> None:
    """Move a flow's timestamps ``by`` into the past."""
    then = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - by
    backend.run(
        lambda s: s.execute(
            update(FlowRow).where(FlowRow.uuid == flow_uuid).values(progress_at=then, created_at=then)
        )
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll an observable condition (a database's lock-wait view, say) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def lock_waiters(backend: Backend) -> int:
    """How many other sessions are inside a row-locking select of a flow (PostgreSQL, MySQL/MariaDB).

    PostgreSQL reports the lock wait itself. MariaDB does not list a statement that
    waits while planning a primary-key lookup (state "Statistics") in INNODB_TRX, so
    there the evidence is the locking statement still running in the process list.
    """
    if backend.engine.dialect.name == "postgresql":
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND query LIKE '%celeryflow_flows%FOR %'"
        )
    else:
        query = (
            "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
            "AND ID <> CONNECTION_ID() AND COMMAND = 'Query' "
            "AND (INFO LIKE '%celeryflow_flows%FOR UPDATE%' OR INFO LIKE '%celeryflow_flows%SHARE MODE%')"
        )
    with backend.engine.connect() as conn:
        return int(conn.execute(text(query)).scalar() or 0)


def upgrade_in_process(url: str, barrier: Any, results: Any) -> None:
    """Process body: fetch without auto-migration, wait for the others, upgrade at the same time."""
    try:
        backend = backends.fetch(url, auto_migrate=False)
        barrier.wait(timeout=120)
        backend.upgrade()
        results.put(("ok", migrate.current(backend)))
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(("error", repr(exc)))


def increment_in_process(url: str, flow_uuid: str, times: int, barrier: Any, results: Any) -> None:
    """Process body: read-modify-write a counter on the flow row ``times`` times under lock_flow."""
    try:
        backend = backends.fetch(url)
        barrier.wait(timeout=120)
        for _ in range(times):
            backend.run(lambda s: bump(backend, s, flow_uuid), attempts=1)
        results.put(("ok", None))
    except Exception as exc:
        results.put(("error", repr(exc)))


def bump(backend: Backend, session: Any, flow_uuid: str) -> None:
    """Lock the flow row and increment ``outstanding`` (a lost update would show in the total)."""
    row = backend.lock_flow(session, flow_uuid)
    assert row is not None
    row.outstanding = row.outstanding + 1


def run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
    """Start ``count`` threads together on ``target(index)``; return what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def body(index: int) -> None:
        try:
            start.wait(timeout=60)
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return errors
