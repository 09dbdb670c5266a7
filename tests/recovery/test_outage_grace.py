"""The grace period after a logbook outage holds for every sweeper (#11 defect 9).

While the logbook is down no heartbeat can be written, so right after it every
heartbeat is old. A sweep in a process that never saw the outage (beat sends the
sweep task to any worker) must not take that for the death of every worker. The
outage is an hour in which nothing could be written: every timestamp of the
logbook is moved back an hour.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import DateTime, select, update

from celeryflow import engines, states
from celeryflow.patterns import unordered_flow
from celeryflow.persistence import backends
from celeryflow.persistence.tables import AtomRow, Base
from celeryflow.runtime import control, heartbeat, steps
from celeryflow.runtime.logbook import EXECUTE
from celeryflow.runtime.settings import Settings
from celeryflow.sweep import Sweeper
from tests.recovery.atoms import Work

INTERVAL = 0.5  # the silence that counts as a gap is 2 s: a loaded machine must not fake one
T = 3.0  # heartbeat timeout: an hour-long outage is far beyond it
DEADLINE = 30.0


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("grace-tests", set_as_current=False)
    app.conf.broker_url = "memory://"
    yield app
    app.close()


def _nothing_written_for(backend: Any, gap: dt.timedelta) -> None:
    """As if ``gap`` had passed with the logbook unwritable: every timestamp in it is that much older."""

    def shift(session: Any) -> None:
        for table in Base.metadata.sorted_tables:
            stamps = [c for c in table.columns if isinstance(c.type, DateTime)]
            if not stamps:
                continue
            keys = list(table.primary_key.columns)
            for row in session.execute(select(*keys, *stamps)).all():
                values = {c.name: row[len(keys) + i] - gap for i, c in enumerate(stamps)
                          if row[len(keys) + i] is not None}
                if values:
                    where = [k == row[i] for i, k in enumerate(keys)]
                    session.execute(update(table).where(*where).values(**values))

    backend.run(shift)


def _atom(backend: Any, flow_uuid: str, name: str) -> AtomRow:
    def read(session: Any) -> AtomRow:
        row = session.get(AtomRow, (flow_uuid, name))
        session.expunge(row)
        return row

    return backend.run(read)


def test_a_sweeper_that_never_saw_the_outage_waits_for_heartbeats_to_resume(
    db_url: str, app: Celery, tmp_path: Any
) -> None:
    backend = backends.fetch(db_url)
    trace = str(tmp_path / "t")
    engine = engines.load(unordered_flow.Flow("fan").add(Work("live", trace), Work("dead", trace)),
                          app=app, backend=backend)
    engine.prepare()
    flow_uuid, comp = engine.flow_uuid, engine.compile()
    epoch = control.start(backend, comp, flow_uuid).epoch
    live = steps.begin(backend, comp, flow_uuid, "live", epoch, EXECUTE, "worker:1")
    dead = steps.begin(backend, comp, flow_uuid, "dead", epoch, EXECUTE, "worker:2")
    hb = heartbeat.Heartbeat(interval=INTERVAL)  # beat() by hand
    hb.register(backend, flow_uuid, "live", "worker:1", live.token)
    hb.register(backend, flow_uuid, "dead", "worker:2", dead.token)
    assert hb.beat() == 2

    _nothing_written_for(backend, dt.timedelta(hours=1))  # the outage
    hb.unregister(backend, flow_uuid, "dead", "worker:2", dead.token)  # worker:2 died meanwhile
    settings = dataclasses.replace(Settings.from_sources(app.conf), heartbeat_timeout=T, heartbeat_interval=INTERVAL)
    sweeper = Sweeper(app, backend=backend, settings=settings, name="never-saw-it")  # a fresh process's sweeper

    report = sweeper.sweep()
    assert report.errors == [] and report.reclaimed == [], "heartbeats judged right after the outage"
    assert report.skipped_heartbeats
    assert _atom(backend, flow_uuid, "live").claim_token == live.token

    # the logbook is back: the live worker heartbeats again; the dead one is reclaimed after the grace
    deadline = time.monotonic() + DEADLINE
    while _atom(backend, flow_uuid, "dead").state != states.PENDING:
        assert time.monotonic() < deadline, "the dead atom was never reclaimed"
        assert hb.beat() == 1
        report = sweeper.sweep()
        assert report.errors == []
        time.sleep(INTERVAL / 4)  # the heartbeat thread's rhythm, not a synchronisation
    hb.stop()
    row = _atom(backend, flow_uuid, "live")
    assert row.state == states.RUNNING and row.claim_token == live.token
