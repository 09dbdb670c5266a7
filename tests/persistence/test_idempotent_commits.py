"""A transaction whose COMMIT went through but whose connection died before the client
heard back is run again by ``backend.run`` (the error invalidated the connection, so it
counts as transient): every transaction must recognise its own earlier commit.

The fault is injected at the SQLAlchemy boundary: a ``commit`` event listener commits
on the driver connection itself and closes it, so the COMMIT SQLAlchemy then sends fails
on a dead connection; a ``handle_error`` listener makes sure every driver calls that a
disconnect (as a dropped socket is), so the backend retries the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event, func, select

from celeryflow import engines, states, task
from celeryflow.exceptions import StorageFailure
from celeryflow.patterns import linear_flow
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import AtomRow, FlowRow
from celeryflow.runtime import control, steps
from celeryflow.runtime.logbook import EXECUTE, REVERT


class Give(task.Task):
    def execute(self) -> int:
        return 1


class Take(task.Task):
    def execute(self, x: int) -> int:
        return x


@dataclass
class Fault:
    left: int
    fired: int = 0
    pending: bool = False


@contextmanager
def commit_lands_then_connection_dies(backend: Any, times: int = 1) -> Iterator[Fault]:
    """The next ``times`` COMMITs reach the database, then their connection is lost."""
    engine = backend.engine
    fault = Fault(times)

    def on_commit(conn: Any) -> None:
        if fault.left <= 0:
            return
        fault.left -= 1
        fault.fired += 1
        fault.pending = True
        raw = conn.connection.dbapi_connection
        raw.commit()  # the transaction is durable now...
        raw.close()  # ...and the connection dies before the client hears back

    def on_error(context: Any) -> None:
        if fault.pending:
            fault.pending = False
            context.is_disconnect = True

    event.listen(engine, "commit", on_commit)
    event.listen(engine, "handle_error", on_error)
    try:
        yield fault
    finally:
        event.remove(engine, "commit", on_commit)
        event.remove(engine, "handle_error", on_error)


def _prepared(url: str) -> tuple[Any, Any, str]:
    engine = engines.load(linear_flow.Flow("f").add(Give("a", provides="x"), Take("b")), backend=url)
    engine.prepare()
    return fetch(url), engine.compile(), engine.flow_uuid


def _atom(backend: Any, flow_uuid: str, name: str) -> tuple[str, bool]:
    def read(session: Any) -> tuple[str, bool]:
        row = session.scalars(select(AtomRow).where(AtomRow.flow_uuid == flow_uuid, AtomRow.name == name)).one()
        return row.state, row.queued

    return backend.run(read)


def test_a_finish_whose_commit_landed_still_returns_the_successors_it_queued(db_url: str) -> None:
    backend, comp, flow_uuid = _prepared(db_url)
    first = control.start(backend, comp, flow_uuid, owner="test")
    assert first.execute == ["a"]
    assert steps.begin(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1").verdict is steps.Verdict.RUN
    with commit_lands_then_connection_dies(backend) as fault:
        after = steps.finish(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1", result=1)
    assert fault.fired == 1
    assert after is not None and after.execute == ["b"], after
    assert _atom(backend, flow_uuid, "a") == (states.SUCCESS, False)
    assert _atom(backend, flow_uuid, "b") == (states.PENDING, True)


def test_a_failed_atom_whose_commit_landed_still_returns_the_reverts_it_queued(db_url: str) -> None:
    backend, comp, flow_uuid = _prepared(db_url)
    first = control.start(backend, comp, flow_uuid, owner="test")
    assert steps.begin(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1").verdict is steps.Verdict.RUN
    failure = {"exc_type_names": ["ValueError"], "exception_str": "boom", "traceback_str": ""}
    with commit_lands_then_connection_dies(backend) as fault:
        after = steps.finish(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1", failure=failure)
    assert fault.fired == 1
    assert after is not None and after.revert == ["a"], after
    assert steps.begin(backend, comp, flow_uuid, "a", after.epoch, REVERT, "w:1").verdict is steps.Verdict.RUN
    with commit_lands_then_connection_dies(backend) as fault:
        done = steps.finish(backend, comp, flow_uuid, "a", after.epoch, REVERT, "w:1", result=None)
    assert fault.fired == 1
    assert done is not None
    assert backend.run(lambda s: s.get(FlowRow, flow_uuid).state) == states.REVERTED


def test_creating_a_flow_whose_commit_landed_is_not_an_error(db_url: str) -> None:
    backend = fetch(db_url)
    engine = engines.load(linear_flow.Flow("f").add(Give("a", provides="x"), Take("b")), backend=db_url)
    backend.run(lambda s: None)  # the schema exists before the fault is armed
    with commit_lands_then_connection_dies(backend) as fault:
        engine.prepare()
    assert fault.fired == 1
    flows = backend.run(lambda s: s.scalar(select(func.count()).select_from(FlowRow)))
    assert flows == 1
    engine.run(timeout=30)


def test_creating_a_different_flow_under_an_existing_id_still_fails(db_url: str) -> None:
    backend, comp, flow_uuid = _prepared(db_url)

    def again(session: Any) -> None:
        control.create_flow(
            session, flow_uuid=flow_uuid, name="another", comp=comp, spec={"other": True}, store={}, meta={},
            logbook_uuid=None, logbook_name=None,
        )

    with pytest.raises(StorageFailure):
        backend.run(again)


def test_a_claim_whose_commit_landed_still_runs_the_atom(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The retried claim finds the atom RUNNING under its own token: it runs, not skips."""
    from celeryflow.runtime import fastpath

    monkeypatch.setattr(fastpath, "ENABLED", False)  # the general transaction: the one with a COMMIT
    backend, comp, flow_uuid = _prepared(db_url)
    first = control.start(backend, comp, flow_uuid, owner="test")
    with commit_lands_then_connection_dies(backend) as fault:
        begun = steps.begin(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1")
    assert fault.fired == 1
    assert begun.verdict is steps.Verdict.RUN, begun
    assert _atom(backend, flow_uuid, "a") == (states.RUNNING, False)
    after = steps.finish(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1", result=1, token=begun.token)
    assert after is not None and after.execute == ["b"]
