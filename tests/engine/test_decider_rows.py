"""Deciders and the logbook rows they change (issue #11, defect 2).

``a -> x`` (a decider that says no, depth ATOM), ``a -> y``, ``x -> y``: ignoring
``x`` counts it into ``y``'s join, so ``y`` is ready in the same transaction. The
scheduler must read the rows it just wrote, not stale copies from the session.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from celeryflow import engines, states, task
from celeryflow.patterns import graph_flow
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import AtomRow
from celeryflow.runtime import control, steps
from celeryflow.runtime.logbook import EXECUTE


class Value(task.Task):
    def execute(self) -> int:
        return 1


def _diamond() -> graph_flow.Flow:
    a, x, y = Value("a"), Value("x"), Value("y")
    flow = graph_flow.Flow("denied-diamond").add(a, x, y)
    flow.link(a, x, decider=lambda history: False, decider_depth="ATOM")
    flow.link(a, y)
    flow.link(x, y)
    return flow


def _states(backend: Any, flow_uuid: str) -> dict[str, str]:
    def read(session: Any) -> dict[str, str]:
        return dict(session.execute(select(AtomRow.name, AtomRow.state).where(AtomRow.flow_uuid == flow_uuid)).all())

    return backend.run(read)


def test_atom_after_an_ignored_one_runs_on_the_embedded_default(sqlite_url: str) -> None:
    engine = engines.load(_diamond(), backend=sqlite_url)
    engine.run(timeout=15)  # before the fix: Timeout, y stayed PENDING
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert engine.storage.get_atom_state("x") == states.IGNORE
    assert engine.storage.get_atom_state("y") == states.SUCCESS


def test_atom_after_an_ignored_one_is_queued_in_the_same_transaction(db_url: str) -> None:
    engine = engines.load(_diamond(), backend=db_url)
    engine.prepare()
    backend, comp, flow_uuid = fetch(db_url), engine.compile(), engine.flow_uuid
    decide = engine._runtime.decide
    first = control.start(backend, comp, flow_uuid, owner="test", decide=decide)
    assert first.execute == ["a"]
    assert steps.begin(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1").verdict is steps.Verdict.RUN
    after = steps.finish(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1", result=1, decide=decide)
    assert after is not None and after.execute == ["y"]
    assert _states(backend, flow_uuid) == {"a": states.SUCCESS, "x": states.IGNORE, "y": states.PENDING}
    assert steps.begin(backend, comp, flow_uuid, "y", first.epoch, EXECUTE, "w:1").verdict is steps.Verdict.RUN
    steps.finish(backend, comp, flow_uuid, "y", first.epoch, EXECUTE, "w:1", result=1, decide=decide)
    assert _states(backend, flow_uuid)["y"] == states.SUCCESS


def test_resume_queues_the_atom_after_one_it_ignores(db_url: str) -> None:
    engine = engines.load(_diamond(), backend=db_url)
    engine.prepare()
    backend, comp, flow_uuid = fetch(db_url), engine.compile(), engine.flow_uuid
    decide = engine._runtime.decide
    first = control.start(backend, comp, flow_uuid, owner="test", decide=decide)
    assert steps.begin(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1").verdict is steps.Verdict.RUN
    control.suspend(backend, comp, flow_uuid)
    # a finishes while the flow is suspending: x's decider waits for the resume
    steps.finish(backend, comp, flow_uuid, "a", first.epoch, EXECUTE, "w:1", result=1, decide=decide)
    assert _states(backend, flow_uuid) == {"a": states.SUCCESS, "x": states.PENDING, "y": states.PENDING}
    again = control.start(backend, comp, flow_uuid, owner="test", decide=decide)
    assert again.execute == ["y"]
    assert _states(backend, flow_uuid)["x"] == states.IGNORE
