"""Fencing per claim (#11 defect 7): two executions in one process are told apart.

A thread or gevent pool, or the embedded default, runs many atoms in one process,
so a worker id (``host:pid``) cannot say which execution holds an atom's claim.
The scheduler is driven by hand (``steps.begin``/``finish``, ``reclaim``) on every
database; the sweep's clock is moved by passing ``now``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select, update

from celeryflow import engines, states
from celeryflow.patterns import unordered_flow
from celeryflow.persistence import backends
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow, utcnow
from celeryflow.runtime import control, heartbeat, reclaim, steps
from celeryflow.runtime.logbook import EXECUTE
from tests.recovery.atoms import Work

T = 10.0
ME = "host:1"  # one process: every claim below is made by the same worker id


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("claims-tests", set_as_current=False)
    app.conf.broker_url = "memory://"
    yield app
    app.close()


def _atom(backend: Any, flow_uuid: str, name: str) -> AtomRow:
    def read(session: Any) -> AtomRow:
        row = session.get(AtomRow, (flow_uuid, name))
        session.expunge(row)
        return row

    return backend.run(read)


def _epoch(backend: Any, flow_uuid: str) -> int:
    return backend.run(lambda s: s.get(FlowRow, flow_uuid).epoch)


def _progress_events(backend: Any, flow_uuid: str) -> int:
    return len(backend.run(lambda s: s.scalars(
        select(EventRow.id).where(EventRow.flow_uuid == flow_uuid, EventRow.kind == "progress")).all()))


def test_a_reclaimed_execution_in_the_same_process_is_fenced_off(db_url: str, app: Celery, tmp_path: Any) -> None:
    backend = backends.fetch(db_url)
    trace = str(tmp_path / "t")
    flow = unordered_flow.Flow("fan").add(Work("u0", trace), Work("u1", trace))
    engine = engines.load(flow, app=app, backend=backend)
    engine.prepare()
    flow_uuid, comp = engine.flow_uuid, engine.compile()
    control.start(backend, comp, flow_uuid)
    first_epoch = _epoch(backend, flow_uuid)
    first = steps.begin(backend, comp, flow_uuid, "u0", first_epoch, EXECUTE, ME)
    assert first.verdict is steps.Verdict.RUN and first.token

    # the execution looks dead (its heartbeat is old at the sweep's "now") but is alive in a thread
    out = reclaim.reclaim(backend, comp, flow_uuid, now=utcnow() + dt.timedelta(seconds=T + 1),
                          heartbeat_timeout=T, max_deliveries=5, owner="sweeper")
    assert out.action == "reclaimed" and out.reset == ["u0"]
    # ... and the same process (another thread) claims the atom again
    second = steps.begin(backend, comp, flow_uuid, "u0", _epoch(backend, flow_uuid), EXECUTE, ME)
    assert second.verdict is steps.Verdict.RUN and second.token and second.token != first.token

    # the first execution's heartbeat and progress refresh nobody's claim
    backend.run(lambda s: s.execute(update(AtomRow).where(AtomRow.flow_uuid == flow_uuid).values(heartbeat_at=None)))
    hb = heartbeat.Heartbeat(interval=3600)  # beat() by hand
    hb.register(backend, flow_uuid, "u0", ME, first.token)
    assert hb.beat() == 0
    events_before = _progress_events(backend, flow_uuid)
    steps.record_progress(backend, flow_uuid, "u0", first_epoch, 0.5, None, ME, token=first.token)
    row = _atom(backend, flow_uuid, "u0")
    assert row.heartbeat_at is None and row.progress == 0.0
    assert _progress_events(backend, flow_uuid) == events_before
    # its late result is discarded: the current claim is the second one
    assert steps.finish(backend, comp, flow_uuid, "u0", first_epoch, EXECUTE, ME, result="late",
                        token=first.token) is None
    row = _atom(backend, flow_uuid, "u0")
    assert row.state == states.RUNNING and row.result is None and row.claim_token == second.token

    # the current claim heartbeats, reports progress and records its result
    hb.unregister(backend, flow_uuid, "u0", ME, first.token)
    hb.register(backend, flow_uuid, "u0", ME, second.token)
    assert hb.beat() == 1
    hb.unregister(backend, flow_uuid, "u0", ME, second.token)
    hb.stop()
    steps.record_progress(backend, flow_uuid, "u0", _epoch(backend, flow_uuid), 0.5, None, ME, token=second.token)
    assert _atom(backend, flow_uuid, "u0").progress == 0.5
    assert steps.finish(backend, comp, flow_uuid, "u0", _epoch(backend, flow_uuid), EXECUTE, ME, result="current",
                        token=second.token) is not None
    assert _atom(backend, flow_uuid, "u0").state == states.SUCCESS


def test_a_finished_claim_cannot_be_finished_again_by_a_later_claims_owner(db_url: str, app: Celery,
                                                                          tmp_path: Any) -> None:
    """A revert claim of the same process is its own claim: the execute claim's token does not finish it."""
    backend = backends.fetch(db_url)
    engine = engines.load(unordered_flow.Flow("fan").add(Work("u0", str(tmp_path / "t"))), app=app, backend=backend)
    engine.prepare()
    flow_uuid, comp = engine.flow_uuid, engine.compile()
    control.start(backend, comp, flow_uuid)
    epoch = _epoch(backend, flow_uuid)
    begun = steps.begin(backend, comp, flow_uuid, "u0", epoch, EXECUTE, ME)
    failure = {"exc_type_names": ["ValueError"], "exception_str": "boom", "traceback_str": ""}
    dispatch = steps.finish(backend, comp, flow_uuid, "u0", epoch, EXECUTE, ME, failure=failure, token=begun.token)
    assert dispatch is not None and dispatch.revert == ["u0"]
    revert = steps.begin(backend, comp, flow_uuid, "u0", dispatch.epoch, "revert", ME)
    assert revert.verdict is steps.Verdict.RUN and revert.token != begun.token
    assert steps.finish(backend, comp, flow_uuid, "u0", dispatch.epoch, "revert", ME, token=begun.token) is None
    assert _atom(backend, flow_uuid, "u0").state == states.REVERTING
    assert steps.finish(backend, comp, flow_uuid, "u0", dispatch.epoch, "revert", ME, token=revert.token) is not None
    assert _atom(backend, flow_uuid, "u0").state == states.REVERTED
