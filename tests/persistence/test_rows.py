"""The general transactions' rows (celeryflow.persistence.rows), on every logbook database.

Read with Core, written back as one guarded UPDATE per row: a write that finds its row
moved is refused (StaleRow), pending writes are visible to the transaction's next
statement, a row is never served from an identity map.
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text, update

from celeryflow import states
from celeryflow.exceptions import StaleRow, StorageFailure
from celeryflow.persistence import backends, rows
from celeryflow.persistence.tables import AtomRow, FlowRow, db_utcnow
from tests.persistence import helpers


def _loaded_columns(entity: type) -> set[str]:
    mapper = inspect(entity)
    return {attr.key for attr in mapper.column_attrs if not attr.deferred}


def test_tracked_rows_have_every_loaded_column_of_their_table() -> None:
    assert rows.FlowState.COLUMNS == _loaded_columns(FlowRow)
    assert rows.AtomState.COLUMNS == _loaded_columns(AtomRow)


def test_writes_commit_and_unknown_attributes_are_refused(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    fd = helpers.make_flow(backend, atoms=2)

    def txn(session: object) -> None:
        flow = rows.lock_flow(session, fd.uuid)  # type: ignore[arg-type]
        assert flow is not None
        flow.owner = "me"
        flow.outstanding += 2
        with pytest.raises(AttributeError, match="no column 'ownr'"):
            flow.ownr = "typo"  # type: ignore[attr-defined]

    backend.run(txn)  # type: ignore[arg-type]
    with backend.transaction(readonly=True) as session:
        row = session.get(FlowRow, fd.uuid)
        assert row is not None and (row.owner, row.outstanding) == ("me", 2)


def test_a_pending_write_is_seen_by_the_next_statement(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    fd = helpers.make_flow(backend, atoms=1)
    with pytest.raises(RuntimeError, match="roll back"), backend.transaction() as session:
        atom = next(iter(rows.load_atoms(session, fd.uuid).values()))
        atom.waiting = 7
        # a bulk statement right after the attribute write sees it (autoflush order)
        session.execute(update(AtomRow).where(AtomRow.flow_uuid == fd.uuid, AtomRow.waiting == 7).values(rwaiting=3))
        again = rows.load_atoms(session, fd.uuid)[atom.name]
        assert again is atom  # one object per row in a transaction, refreshed in place
        assert (atom.waiting, atom.rwaiting) == (7, 3)
        raise RuntimeError("roll back")
    with backend.transaction(readonly=True) as session:
        assert session.scalar(select(AtomRow.waiting).where(AtomRow.flow_uuid == fd.uuid)) == 0


def test_a_write_to_a_row_someone_else_moved_is_refused(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    fd = helpers.make_flow(backend, atoms=1)

    def txn(session: object) -> None:
        atom = next(iter(rows.load_atoms(session, fd.uuid).values()))  # type: ignore[arg-type]
        # behind the tracked row's back (on SQLite the same transaction: one writer at a time)
        session.execute(  # type: ignore[attr-defined]
            text("UPDATE celeryflow_atoms SET state = 'RUNNING' WHERE flow_uuid = :f"), {"f": fd.uuid})
        atom.state = states.SUCCESS  # its guard expects the state it read: PENDING

    with pytest.raises(StaleRow, match=r"celeryflow_atoms row .* someone else moved first"):
        backend.run(txn, attempts=1)  # type: ignore[arg-type]
    assert issubclass(StaleRow, StorageFailure)
    with backend.transaction(readonly=True) as session:  # nothing of it committed
        assert session.scalar(select(AtomRow.state).where(AtomRow.flow_uuid == fd.uuid)) == states.PENDING


def test_the_flow_guard_is_its_state_and_epoch(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    fd = helpers.make_flow(backend)

    def txn(session: object) -> None:
        flow = rows.lock_flow(session, fd.uuid)  # type: ignore[arg-type]
        assert flow is not None
        session.execute(text("UPDATE celeryflow_flows SET epoch = epoch + 1"))  # type: ignore[attr-defined]
        flow.held = 1

    with pytest.raises(StaleRow, match="celeryflow_flows row uuid="):
        backend.run(txn, attempts=1)  # type: ignore[arg-type]


def test_the_databases_clock_is_read_back_after_the_write(any_db_url: str) -> None:
    backend = backends.fetch(any_db_url)
    fd = helpers.make_flow(backend)
    with backend.transaction() as session:
        flow = rows.lock_flow(session, fd.uuid)
        assert flow is not None
        flow.progress_at = db_utcnow()
        flow.state = states.RUNNING  # a guard column changes: the next write expects the new value
        rows.write_pending(session)
        stored = session.scalar(select(FlowRow.progress_at).where(FlowRow.uuid == fd.uuid))
        assert flow.progress_at == stored
        flow.held = 2
        rows.write_pending(session)
    with backend.transaction(readonly=True) as session:
        row = session.get(FlowRow, fd.uuid)
        assert row is not None and (row.state, row.held) == (states.RUNNING, 2)
