"""The sweep's logic without processes: reclaim transactions, candidates, heartbeats, outage helpers.

Flows are persisted in an SQLite logbook and driven by calling the worker's
transactions (``steps.begin``/``finish``) directly; the sweep's clock is moved
forward by passing ``now`` instead of waiting.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select, update

from celeryflow import engines, states
from celeryflow.exceptions import StorageFailure
from celeryflow.patterns import linear_flow, unordered_flow
from celeryflow.persistence import backends
from celeryflow.persistence.backends.base import Backend
from celeryflow.persistence.tables import AtomRow, FlowRow, utcnow
from celeryflow.runtime import control, heartbeat, outage, reclaim, steps
from celeryflow.runtime.logbook import EXECUTE
from celeryflow.runtime.settings import Settings
from tests.recovery.atoms import Work

T = 10.0  # heartbeat timeout used throughout
LATER = dt.timedelta(seconds=T + 1)


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("reclaim-tests", set_as_current=False)
    app.conf.broker_url = "memory://"
    yield app
    app.close()


@pytest.fixture
def backend(sqlite_url: str) -> Backend:
    return backends.fetch(sqlite_url)


class Flow:
    """A flow persisted and started in the logbook, nothing published."""

    def __init__(self, backend: Backend, app: Celery, flow: Any) -> None:
        self.backend = backend
        engine = engines.load(flow, app=app, backend=backend)
        engine.prepare()
        self.id = engine.flow_uuid
        self.comp = engine.compile()
        self.dispatch = control.start(backend, self.comp, self.id)

    @property
    def epoch(self) -> int:
        return self.row().epoch

    def row(self) -> FlowRow:
        def read(session: Any) -> FlowRow:
            row = session.get(FlowRow, self.id)
            session.expunge(row)
            return row

        return self.backend.run(read)

    def atoms(self) -> dict[str, AtomRow]:
        def read(session: Any) -> dict[str, AtomRow]:
            rows = session.scalars(select(AtomRow).where(AtomRow.flow_uuid == self.id)).all()
            for r in rows:
                session.expunge(r)
            return {r.name: r for r in rows}

        return self.backend.run(read)

    def begin(self, name: str, worker: str, epoch: int | None = None, mode: str = EXECUTE) -> steps.Begun:
        return steps.begin(self.backend, self.comp, self.id, name, self.epoch if epoch is None else epoch, mode, worker)

    def finish(self, name: str, worker: str, epoch: int, **kw: Any) -> Any:
        return steps.finish(self.backend, self.comp, self.id, name, epoch, EXECUTE, worker, result=name, **kw)

    def reclaim(self, now: dt.datetime, max_deliveries: int = 5, **kw: Any) -> reclaim.Outcome:
        return reclaim.reclaim(self.backend, self.comp, self.id, now=now, heartbeat_timeout=T,
                               max_deliveries=max_deliveries, owner="test-sweeper", **kw)


def fan(trace: str, n: int = 3) -> unordered_flow.Flow:
    return unordered_flow.Flow("fan").add(*(Work(f"u{i}", trace) for i in range(n)))


def chain(trace: str, n: int = 3) -> linear_flow.Flow:
    return linear_flow.Flow("chain").add(*(Work(f"s{i}", trace) for i in range(n)))


def test_orphaned_atom_is_reset_and_healthy_siblings_keep_their_claim(backend, app, tmp_path):
    f = Flow(backend, app, fan(str(tmp_path / "t")))
    e1 = f.epoch
    assert f.begin("u0", "dead:1").verdict is steps.Verdict.RUN
    assert f.begin("u1", "alive:2").verdict is steps.Verdict.RUN
    now = utcnow() + LATER
    # the live worker's heartbeat is fresh at "now"; the dead one's is not
    backend.run(lambda s: s.execute(update(AtomRow).where(AtomRow.name == "u1").values(heartbeat_at=now)))
    out = f.reclaim(now)
    assert out.action == "reclaimed" and out.reset == ["u0"] and f.epoch == e1 + 1
    atoms = f.atoms()
    assert atoms["u0"].state == states.PENDING and atoms["u0"].queued and atoms["u0"].worker is None
    assert atoms["u1"].state == states.RUNNING and atoms["u1"].worker == "alive:2"
    assert out.dispatch is not None and sorted(out.dispatch.execute) == ["u0", "u2"]  # reset + still queued
    assert f.row().outstanding == 3
    # a second sweep right after finds nothing to do: the flow was claimed once
    assert f.reclaim(now).action == "none"
    # the healthy worker's result (old epoch) is accepted: its claim survived
    assert f.finish("u1", "alive:2", e1) is not None
    # the dead worker wakes up: its late result is discarded
    assert f.finish("u0", "dead:1", e1) is None
    # old-epoch messages are refused; the new epoch's run completes the flow
    assert f.begin("u0", "w:3", epoch=e1).verdict is steps.Verdict.SKIP
    for name in ("u0", "u2"):
        assert f.begin(name, "w:3").verdict is steps.Verdict.RUN
        f.finish(name, "w:3", f.epoch)
    assert f.row().state == states.SUCCESS
    assert {r.state for r in f.atoms().values()} == {states.SUCCESS}


def test_poison_atom_fails_through_finish_and_the_flow_compensates(backend, app, tmp_path):
    f = Flow(backend, app, chain(str(tmp_path / "t")))
    f.begin("s0", "w:1")
    f.finish("s0", "w:1", f.epoch)
    now = utcnow()
    for death in (1, 2):
        assert f.begin("s1", f"w:{death}").verdict is steps.Verdict.RUN
        now += LATER
        out = f.reclaim(now, max_deliveries=3)
        assert out.action == "reclaimed" and out.reset == ["s1"] and not out.poison
    assert f.begin("s1", "w:3").verdict is steps.Verdict.RUN
    now += LATER
    out = f.reclaim(now, max_deliveries=3)
    assert [p.name for p in out.poison] == ["s1"] and out.poison[0].deaths == 3
    assert f.atoms()["s1"].state == states.RUNNING  # left for finish
    assert f.reclaim(now).action == "none"  # its heartbeat was refreshed: no other sweep takes it
    poison = out.poison[0]
    dispatch = steps.finish(backend, f.comp, f.id, "s1", out.epoch, poison.mode, poison.worker,
                            failure=poison.failure(f.id, 3))
    assert f.row().state == states.REVERTING
    assert dispatch is not None and sorted(dispatch.revert) == ["s1"]
    assert (f.atoms()["s1"].lost_execute, f.atoms()["s1"].lost_revert) == (3, 0)
    assert "worker_lost" not in json.loads(f.atoms()["s1"].meta or "{}")  # the meta is the user's
    assert "WorkerLost" in (f.atoms()["s1"].failure or "")


def test_lost_messages_are_resent_with_the_same_epoch_and_backoff(backend, app, tmp_path):
    f = Flow(backend, app, fan(str(tmp_path / "t")))
    epoch = f.epoch
    now = utcnow()
    assert f.reclaim(now).action == "none"  # queued just now: not lost
    out = f.reclaim(now + LATER)
    assert out.action == "resent" and sorted(out.resent) == ["u0", "u1", "u2"] and f.epoch == epoch
    assert out.dispatch is not None and out.dispatch.epoch == epoch
    assert f.reclaim(now + LATER * 2).action == "none"  # back-off: the second resend waits 2T
    assert f.reclaim(now + LATER * 4).action == "resent"
    # the original message arrives after all: it runs once, the duplicate is skipped
    assert f.begin("u0", "w:1").verdict is steps.Verdict.RUN
    assert f.begin("u0", "w:2").verdict is steps.Verdict.SKIP


def test_stuck_compensation_is_redriven(backend, app, tmp_path):
    f = Flow(backend, app, chain(str(tmp_path / "t")))
    f.begin("s0", "w:1")
    f.finish("s0", "w:1", f.epoch)
    f.begin("s1", "w:1")
    # simulate a flow left REVERTING with nothing in flight and no compensation planned
    def wedge(session: Any) -> None:
        flow = session.get(FlowRow, f.id)
        flow.state, flow.outstanding = states.REVERTING, 0
        session.execute(update(AtomRow).where(AtomRow.flow_uuid == f.id).values(queued=False))
        session.execute(update(AtomRow).where(AtomRow.name == "s1").values(state=states.FAILURE))

    backend.run(wedge)
    now = utcnow() + LATER
    out = f.reclaim(now)
    assert out.action == "redriven" and out.start
    assert f.reclaim(now).action == "none"  # claimed: another sweep leaves it alone
    dispatch = reclaim.redrive(backend, f.comp, f.id, "test-sweeper")
    assert sorted(dispatch.revert) == ["s1"]
    assert f.row().state == states.REVERTING and f.row().outstanding == 1


def test_healthy_and_finished_flows_are_left_alone(backend, app, tmp_path):
    f = Flow(backend, app, chain(str(tmp_path / "t")))
    f.begin("s0", "w:1")
    now = utcnow()
    backend.run(lambda s: s.execute(update(AtomRow).values(heartbeat_at=now + LATER)))
    assert f.reclaim(now + LATER).action == "none"  # running, heartbeat fresh
    f.finish("s0", "w:1", f.epoch)
    for name in ("s1", "s2"):
        f.begin(name, "w:1")
        f.finish(name, "w:1", f.epoch)
    assert f.reclaim(now + LATER * 10).action == "none" and f.row().state == states.SUCCESS


def test_stale_heartbeats_are_ignored_right_after_an_outage(backend, app, tmp_path):
    f = Flow(backend, app, chain(str(tmp_path / "t")))
    f.begin("s0", "w:1")
    assert f.reclaim(utcnow() + LATER, stale_atoms=False).action == "none"
    assert f.reclaim(utcnow() + LATER).action == "reclaimed"


def test_sweeper_examines_only_stalled_flows(backend, app, tmp_path, monkeypatch):
    from celeryflow import sweep

    sent: list[Any] = []
    monkeypatch.setattr(sweep, "publish", lambda app, comp, dispatch, key, chain_max: sent.append(dispatch))
    trace = str(tmp_path / "t")
    done = [Flow(backend, app, chain(trace, 1)) for _ in range(30)]
    for f in done:
        f.begin("s0", "w:1")
        f.finish("s0", "w:1", f.epoch)
    orphan = Flow(backend, app, chain(trace))
    orphan.begin("s0", "w:dead")
    lost = Flow(backend, app, fan(trace))
    settings = Settings(heartbeat_timeout=0.0, heartbeat_interval=0.0, backend=str(backend.url))
    sweeper = sweep.Sweeper(app, backend=backend, settings=settings, name="unit")
    report = sweeper.sweep()
    assert report.examined == 2  # the 30 finished flows are never looked at
    assert report.reclaimed == [orphan.id] and report.resent == [lost.id]
    assert {d.flow_uuid for d in sent} == {orphan.id, lost.id}
    assert sweep.beat_entry(settings)["task"] == sweep.SWEEP_TASK


def test_sweeper_reports_an_unreachable_logbook(app):
    from celeryflow import sweep

    settings = Settings(heartbeat_timeout=1.0)
    sweeper = sweep.Sweeper(app, backend="postgresql://nobody@127.0.0.1:1/none", settings=settings)
    report = sweeper.sweep()
    assert report.errors and not report.acted
    assert sweeper.sweep().errors  # again, without raising


def test_heartbeat_is_one_statement_for_all_running_atoms(backend, app, tmp_path):
    f = Flow(backend, app, fan(str(tmp_path / "t"), 4))
    for name in ("u0", "u1", "u2"):
        f.begin(name, "me:1")
    backend.run(lambda s: s.execute(update(AtomRow).values(heartbeat_at=None)))
    hb = heartbeat.Heartbeat(interval=3600)  # beat() by hand
    for name in ("u0", "u1", "u2"):
        hb.register(backend, f.id, name, "me:1")
    hb.register(backend, f.id, "u3", "me:1")  # not running: not touched
    assert hb.beat() == 3 and hb.beats == 1
    atoms = f.atoms()
    assert all(atoms[n].heartbeat_at is not None for n in ("u0", "u1", "u2")) and atoms["u3"].heartbeat_at is None
    for name in ("u0", "u1", "u2", "u3"):
        hb.unregister(backend, f.id, name, "me:1")
    assert hb.beat() == 0 and hb.beats == 1  # nothing running: no write at all
    hb.stop()


def test_heartbeat_does_not_revive_a_reclaimed_atom(backend, app, tmp_path):
    f = Flow(backend, app, chain(str(tmp_path / "t")))
    f.begin("s0", "me:1")
    with heartbeat.beating(backend, f.id, "s0", "me:1", interval=3600) as hb:
        assert f.reclaim(utcnow() + LATER).action == "reclaimed"
        assert hb.beat() == 0
    # only this flow's atoms: the process-wide heartbeat may carry other tests' atoms
    assert [key for key in hb.running() if key[0] == f.id] == []


def test_persist_retries_then_gives_up():
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StorageFailure("down")
        return "ok"

    assert outage.persist(flaky, "x", patience=60, sleep=sleeps.append) == "ok" and len(sleeps) == 2

    def down() -> str:
        raise StorageFailure("down")

    assert outage.persist(down, "x", patience=0.0, sleep=sleeps.append) is None


def test_retry_later_asks_celery_then_hands_over_to_the_sweep():
    class Request:
        retries = 0

    class FakeTask:
        request = Request()

        def retry(self, **kw: Any) -> Exception:
            self.kw = kw
            return RuntimeError("retry")

    task = FakeTask()
    with pytest.raises(RuntimeError):
        outage.retry_later(task, StorageFailure("down"), "m")  # type: ignore[arg-type,unused-ignore]
    assert 0 < task.kw["countdown"] <= outage.MAX_COUNTDOWN and task.kw["max_retries"] == outage.MAX_MESSAGE_RETRIES
    task.request.retries = outage.MAX_MESSAGE_RETRIES
    outage.retry_later(task, StorageFailure("down"), "m")  # type: ignore[arg-type,unused-ignore]  # no raise


def test_operator_retries_a_failed_compensation(backend, app, tmp_path):
    """docs/recovery.md: after fixing a failed revert, `flows revert` retries it before its dependencies."""
    from celeryflow.runtime.logbook import REVERT

    f = Flow(backend, app, chain(str(tmp_path / "t")))
    for name in ("s0", "s1"):
        f.begin(name, "w:1")
        f.finish(name, "w:1", f.epoch)
    f.begin("s2", "w:1")
    f.finish("s2", "w:1", f.epoch, failure={"exc_type_names": ["RuntimeError"], "exception_str": "boom"})
    for name, failure in (("s2", None), ("s1", {"exc_type_names": ["RuntimeError"], "exception_str": "revert"})):
        assert f.begin(name, "w:1", mode=REVERT).verdict is steps.Verdict.RUN
        steps.finish(backend, f.comp, f.id, name, f.epoch, REVERT, "w:1", failure=failure)
    assert f.row().state == states.FAILURE
    assert {n: r.state for n, r in f.atoms().items()} == {
        "s0": states.SUCCESS, "s1": states.REVERT_FAILURE, "s2": states.REVERTED}
    dispatch = control.request_revert(backend, f.comp, f.id)
    assert dispatch.revert == ["s1"]  # the failed revert first; s0 waits for it
    for name in ("s1", "s0"):
        assert f.begin(name, "w:2", mode=REVERT).verdict is steps.Verdict.RUN
        steps.finish(backend, f.comp, f.id, name, f.epoch, REVERT, "w:2")
    assert f.row().state == states.REVERTED
    assert {r.state for r in f.atoms().values()} == {states.REVERTED}


def test_redriving_a_compensation_never_reverts_under_a_failed_revert(backend, app, tmp_path):
    """A diamond a -> (b, c) -> d compensating: b's revert failed; the flow is re-driven (resume or
    the sweep): c is still reverted, a (which b depends on) is not."""
    from celeryflow.patterns import graph_flow
    from celeryflow.runtime.logbook import REVERT

    trace = str(tmp_path / "t")
    flow = graph_flow.Flow("d").add(
        Work("a", trace, provides="a"), Work("b", trace, provides="b", requires=["a"]),
        Work("c", trace, provides="c", requires=["a"]), Work("d", trace, requires=["b", "c"]))
    f = Flow(backend, app, flow)
    for name in ("a", "b", "c"):
        assert f.begin(name, "w:1").verdict is steps.Verdict.RUN, name
        f.finish(name, "w:1", f.epoch)
    f.begin("d", "w:1")
    f.finish("d", "w:1", f.epoch, failure={"exc_type_names": ["RuntimeError"], "exception_str": "boom"})
    f.begin("d", "w:1", mode=REVERT)
    steps.finish(backend, f.comp, f.id, "d", f.epoch, REVERT, "w:1")
    f.begin("b", "w:1", mode=REVERT)
    steps.finish(backend, f.comp, f.id, "b", f.epoch, REVERT, "w:1",
                 failure={"exc_type_names": ["RuntimeError"], "exception_str": "revert"})
    # c's revert message was lost: the flow is stuck REVERTING with nothing in flight
    backend.run(lambda s: s.execute(update(AtomRow).where(AtomRow.flow_uuid == f.id).values(queued=False)))
    backend.run(lambda s: s.execute(update(FlowRow).where(FlowRow.uuid == f.id).values(outstanding=0)))
    dispatch = reclaim.redrive(backend, f.comp, f.id, "test")
    assert dispatch.revert == ["c"]
    f.begin("c", "w:2", mode=REVERT)
    steps.finish(backend, f.comp, f.id, "c", f.epoch, REVERT, "w:2")
    assert f.row().state == states.FAILURE
    assert {n: r.state for n, r in f.atoms().items()} == {
        "a": states.SUCCESS, "b": states.REVERT_FAILURE, "c": states.REVERTED, "d": states.REVERTED}
