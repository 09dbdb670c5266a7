"""Liveness uses the database's clock only (#11 defect 8).

Each machine's wall clock may be off. Here the Python clock of this process is
made to lie (every ``utcnow``/``now_ms`` the package uses, shifted by an hour):
first as a worker whose clock is behind (or ahead), then as a sweeper or a
conductor whose clock is the other way. Heartbeats, queue times and job claims
written through the lying clock must still be judged correctly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import update

from celeryflow import engines, states
from celeryflow.exceptions import UnclaimableJob
from celeryflow.jobs import backends as job_backends
from celeryflow.jobs.backends import base as jobs_base
from celeryflow.patterns import unordered_flow
from celeryflow.persistence import backends, tables
from celeryflow.persistence.tables import AtomRow
from celeryflow.runtime import control, heartbeat, steps
from celeryflow.runtime.logbook import EXECUTE
from celeryflow.runtime.settings import Settings
from celeryflow.sweep import Sweeper
from tests.recovery.atoms import Work

T = 60.0  # heartbeat timeout: far below the clocks' skew
HOUR = dt.timedelta(hours=1)
REAL_UTCNOW = tables.utcnow
REAL_NOW_MS = jobs_base.now_ms


class Clock:
    """Shift the package's Python clock (``utcnow`` and ``now_ms`` wherever they were imported)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.offset = dt.timedelta(0)

    def shift(self, offset: dt.timedelta) -> None:
        self.offset = offset

        def utcnow() -> dt.datetime:
            return REAL_UTCNOW() + self.offset

        def now_ms() -> int:
            return REAL_NOW_MS() + int(self.offset.total_seconds() * 1000)

        fakes: dict[Callable[..., Any], Callable[..., Any]] = {REAL_UTCNOW: utcnow, REAL_NOW_MS: now_ms}
        for name, module in list(sys.modules.items()):
            if not name.startswith("celeryflow") or module is None:
                continue
            for attr in ("utcnow", "now_ms"):
                current = getattr(module, attr, None)
                original = getattr(current, "_real", current)
                if original in fakes:
                    fake = fakes[original]
                    fake._real = original  # type: ignore[attr-defined]
                    self.monkeypatch.setattr(module, attr, fake)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("clock-tests", set_as_current=False)
    app.conf.broker_url = "memory://"
    yield app
    app.close()


def _atoms(backend: Any, flow_uuid: str) -> dict[str, AtomRow]:
    def read(session: Any) -> dict[str, AtomRow]:
        rows = {n: session.get(AtomRow, (flow_uuid, n)) for n in ("live", "dead")}
        for row in rows.values():
            session.expunge(row)
        return rows

    return backend.run(read)


@pytest.mark.parametrize("worker_skew", [-1, 1], ids=["worker-behind", "worker-ahead"])
def test_a_skewed_clock_neither_kills_a_live_atom_nor_saves_a_dead_one(
    db_url: str, app: Celery, clock: Clock, tmp_path: Any, worker_skew: int
) -> None:
    backend = backends.fetch(db_url)
    trace = str(tmp_path / "t")
    engine = engines.load(unordered_flow.Flow("fan").add(Work("live", trace), Work("dead", trace)),
                          app=app, backend=backend)
    engine.prepare()
    flow_uuid, comp = engine.flow_uuid, engine.compile()

    clock.shift(worker_skew * HOUR)  # the submitter's and the workers' clock
    epoch = control.start(backend, comp, flow_uuid).epoch
    live = steps.begin(backend, comp, flow_uuid, "live", epoch, EXECUTE, "worker:1")
    assert steps.begin(backend, comp, flow_uuid, "dead", epoch, EXECUTE, "worker:2").verdict is steps.Verdict.RUN
    hb = heartbeat.Heartbeat(interval=3600)  # beat() by hand
    hb.register(backend, flow_uuid, "live", "worker:1", live.token)
    assert hb.beat() == 1
    hb.stop()
    # worker:2 died a day ago (by any clock)
    backend.run(lambda s: s.execute(update(AtomRow).where(AtomRow.flow_uuid == flow_uuid, AtomRow.name == "dead")
                                    .values(heartbeat_at=REAL_UTCNOW() - dt.timedelta(days=1))))

    clock.shift(-worker_skew * HOUR)  # the sweeper's clock is off the other way
    settings = dataclasses.replace(Settings.from_sources(app.conf), heartbeat_timeout=T, heartbeat_interval=T / 6)
    report = Sweeper(app, backend=backend, settings=settings, name="sweeper").sweep()
    assert report.errors == []
    atoms = _atoms(backend, flow_uuid)
    assert atoms["live"].state == states.RUNNING and atoms["live"].claim_token == live.token, "live atom reclaimed"
    assert atoms["dead"].state == states.PENDING and atoms["dead"].queued, "dead atom not reclaimed"
    assert report.reclaimed == [flow_uuid]


def test_a_job_claim_is_judged_by_the_database_clock(db_url: str, clock: Clock) -> None:
    with job_backends.fetch("clock-board", {"board": "sql", "url": db_url}) as board:
        job = board.post("work")
        clock.shift(-HOUR)  # the first conductor's clock is behind
        board.claim(job, "conductor-a", expiry=600)
        clock.shift(HOUR)  # the second one's is ahead
        assert board.find_owner(job) == "conductor-a"
        assert board.state_of(job) == states.CLAIMED
        with pytest.raises(UnclaimableJob):
            board.claim(job, "conductor-b", expiry=600)
        board.extend_claim(job, "conductor-a", expiry=600)
        assert board.find_owner(job) == "conductor-a"
