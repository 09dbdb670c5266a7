"""The caller's event follower (what feeds ``engine.run``'s notifiers and ``FlowHandle.wait``).

Event ids come from a sequence (an auto-increment on MariaDB): a transaction that
took a lower id may commit after others took and committed higher ones. Here one
transaction that inserted an event of the followed flow is held open on a second
connection while more than 256 events of another flow commit; the follower must
still deliver that event once it commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, insert, select

from celeryflow import engines, states, task
from celeryflow.engines.waiter import Follower, last_event_id
from celeryflow.patterns import linear_flow
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import EventRow
from celeryflow.runtime.logbook import Events

OTHER_FLOWS_EVENTS = 300


class Noop(task.Task):
    def execute(self) -> None:
        return None


def _new_flow(url: str) -> str:
    engine = engines.load(linear_flow.Flow("f").add(Noop("a")), backend=url)
    engine.prepare()
    return engine.flow_uuid


def _event(flow_uuid: str, atom: str) -> dict[str, Any]:
    events = Events(flow_uuid, 0, "test")
    events.add("atom", states.PENDING, states.RUNNING, atom=atom)
    return events.rows[0]


@contextmanager
def _held_event(backend: Any, flow_uuid: str, atom: str, other: str) -> Iterator[dict[str, Any]]:
    """An event inserted by a transaction that commits only when the block ends.

    SQLite has one writer at a time (every write transaction begins IMMEDIATE), so the
    held transaction would block the traffic; there the event takes an id reserved
    before the traffic and is inserted afterwards, the same order as seen by a reader.
    """
    row = _event(flow_uuid, atom)
    if backend.engine.dialect.name == "sqlite":
        reserved = int(backend.run(lambda s: s.scalar(select(func.max(EventRow.id)))) or 0) + 1
        # the other flow's traffic starts after the reserved id
        first = {**_event(other, "other"), "id": reserved + 1}
        backend.run(lambda s: s.execute(insert(EventRow), [first]))
        yield row
        backend.run(lambda s: s.execute(insert(EventRow), [{**row, "id": reserved}]))
        return
    with backend.engine.connect() as conn:
        transaction = conn.begin()
        conn.execute(insert(EventRow), [row])
        yield row
        transaction.commit()


def _commit_events(backend: Any, flow_uuid: str, count: int) -> None:
    for start in range(0, count, 100):
        rows = [_event(flow_uuid, f"other{i}") for i in range(start, min(count, start + 100))]
        backend.run(lambda s, rows=rows: s.execute(insert(EventRow), rows))


def test_an_event_committed_late_reaches_the_follower_whatever_other_flows_commit(db_url: str) -> None:
    backend = fetch(db_url)
    followed, other = _new_flow(db_url), _new_flow(db_url)
    seen: list[str | None] = []
    follower = Follower(backend, followed, last_event_id(backend, followed))
    follower.poll(lambda row: seen.append(row.atom_name))
    with _held_event(backend, followed, "late", other):
        _commit_events(backend, other, OTHER_FLOWS_EVENTS)
        # the followed flow goes on meanwhile: its newer event is delivered first
        backend.run(lambda s: s.execute(insert(EventRow), [_event(followed, "newer")]))
        follower.poll(lambda row: seen.append(row.atom_name))
        assert "newer" in seen and "late" not in seen
    follower.poll(lambda row: seen.append(row.atom_name))
    assert seen.count("late") == 1, seen
    assert seen.count("newer") == 1, seen
