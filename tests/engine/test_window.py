"""The dispatch window: at most CELERYFLOW_DISPATCH_WINDOW atoms of a flow queued or running,
at every moment, whatever made them ready (a start, a finishing atom, a retry round, a
compensation wave, a re-drive or a reclaim).

The scheduler is driven here by hand (control.start, steps.begin/finish: what the
engine and the workers run), so every intermediate state can be checked; one test
runs a whole flow through the embedded engine with a small window.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from celeryflow import engines, retry, states, task
from celeryflow.patterns import linear_flow, unordered_flow
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import AtomRow, FlowRow, utcnow
from celeryflow.runtime import control, fastpath, reclaim, steps
from celeryflow.runtime.logbook import EXECUTE, REVERT, Dispatch

WINDOW = 4
ATOMS = 30


class Square(task.Task):
    def execute(self, x: int) -> int:
        return x * x


def fan(n: int = ATOMS) -> unordered_flow.Flow:
    return unordered_flow.Flow("fan").add(*(Square(f"sq{i:02d}", provides=f"y{i:02d}") for i in range(n)))


def _flow_row(backend: Any, flow_uuid: str) -> tuple[str, int, int, int]:
    def read(session: Any) -> tuple[str, int, int, int]:
        flow = session.get(FlowRow, flow_uuid)
        queued = session.scalar(
            select(func.count()).select_from(AtomRow).where(AtomRow.flow_uuid == flow_uuid, AtomRow.queued.is_(True))
        )
        return flow.state, flow.outstanding, flow.held, int(queued or 0)

    return backend.run(read)


def head_then_fan(n: int = 20) -> linear_flow.Flow:
    """``linear(a, unordered(n))``: the whole fan becomes ready when ``a`` finishes (a later wave)."""
    return linear_flow.Flow("head-then-fan").add(Square("a", provides="y"), fan(n))


def _in_flight(backend: Any, flow_uuid: str) -> int:
    """Atoms of the flow on the broker or in a worker's hands, counted from the atom rows themselves."""

    def read(session: Any) -> int:
        return int(session.scalar(
            select(func.count()).select_from(AtomRow).where(
                AtomRow.flow_uuid == flow_uuid,
                AtomRow.queued.is_(True) | AtomRow.state.in_((states.RUNNING, states.REVERTING)),
            )
        ) or 0)

    return backend.run(read)


def _prepared(url: str, flow: Any = None) -> tuple[Any, Any, str]:
    engine = engines.load(flow if flow is not None else fan(), store={"x": 3}, backend=url)
    engine.prepare()
    return fetch(url), engine.compile(), engine.flow_uuid


def _drive(backend: Any, comp: Any, flow_uuid: str, first: Dispatch, fail: str | None = None, *,
           fail_times: int = 1 << 30, reverts: int | None = None) -> list[str]:
    """Deliver every dispatched message, one at a time, as a worker would; return the atoms executed.

    ``fail`` fails its first ``fail_times`` executions; with ``reverts``, stop (the rest of the
    messages lost, as when the driver dies) once that many reverts have been recorded.
    """
    todo = [(name, EXECUTE) for name in first.execute]
    todo.extend((name, REVERT) for name in first.revert)
    ran: list[str] = []
    reverted = 0
    while todo and (reverts is None or reverted < reverts):
        name, mode = todo.pop(0)
        epoch = first.epoch
        begun = steps.begin(backend, comp, flow_uuid, name, epoch, mode, "w:1")
        if begun.verdict is steps.Verdict.SKIP:
            continue
        if begun.verdict is steps.Verdict.REFUSE:
            after = steps.refuse(backend, comp, flow_uuid, name, epoch, "w:1", mode, window=WINDOW)
        else:
            failure = None
            if mode == EXECUTE:
                ran.append(name)
                if name == fail and ran.count(name) <= fail_times:
                    failure = {"exc_type_names": ["ValueError"], "exception_str": "boom", "traceback_str": ""}
            after = steps.finish(backend, comp, flow_uuid, name, epoch, mode, "w:1",
                                 result=None if failure else 9, failure=failure, window=WINDOW)
            reverted += mode == REVERT
        _, outstanding, _, queued = _flow_row(backend, flow_uuid)
        assert outstanding <= WINDOW and queued <= WINDOW, (outstanding, queued)
        assert _in_flight(backend, flow_uuid) <= WINDOW, name
        if after is not None:
            todo.extend((n, EXECUTE) for n in after.execute)
            todo.extend((n, REVERT) for n in after.revert)
    return ran


def test_start_queues_a_window_and_holds_the_rest(any_db_url: str) -> None:
    backend, comp, flow_uuid = _prepared(any_db_url)
    first = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    assert len(first.execute) == WINDOW
    assert _flow_row(backend, flow_uuid) == (states.RUNNING, WINDOW, ATOMS - WINDOW, WINDOW)


def test_held_atoms_are_queued_as_the_window_drains(any_db_url: str) -> None:
    backend, comp, flow_uuid = _prepared(any_db_url)
    first = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    ran = _drive(backend, comp, flow_uuid, first)
    assert sorted(ran) == sorted(comp.atoms) and len(ran) == ATOMS  # each exactly once
    assert _flow_row(backend, flow_uuid) == (states.SUCCESS, 0, 0, 0)


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "general-path"])
def test_a_later_wave_is_held_to_the_window(any_db_url: str, monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    """``a`` finishing makes 20 atoms ready at once: only the window's room is queued, the rest held."""
    monkeypatch.setattr(fastpath, "ENABLED", fast)
    backend, comp, flow_uuid = _prepared(any_db_url, head_then_fan(20))
    first = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    assert first.execute == ["a"]
    ran = _drive(backend, comp, flow_uuid, first)  # asserts the in-flight count after every step
    assert sorted(ran) == sorted(comp.atoms) and len(ran) == 21
    assert _flow_row(backend, flow_uuid) == (states.SUCCESS, 0, 0, 0)


def test_each_round_of_a_retried_scope_is_held_to_the_window(any_db_url: str) -> None:
    """A retry controller releases its whole scope when it runs, in every round; members refused while
    their scope is reverted refill the window with atoms outside it: the window holds throughout."""
    sub = unordered_flow.Flow("sub", retry=retry.Times(3, name="r", provides="attempt")).add(
        *(Square(f"w{i:02d}", provides=f"v{i:02d}") for i in range(12))
    )
    flow = unordered_flow.Flow("retried").add(sub, *(Square(f"z{i:02d}", provides=f"y{i:02d}") for i in range(12)))
    backend, comp, flow_uuid = _prepared(any_db_url, flow)
    first = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    assert "r" in first.execute
    ran = _drive(backend, comp, flow_uuid, first, fail="w00", fail_times=1)
    assert ran.count("r") == 2 and ran.count("w00") == 2
    assert sorted(set(ran)) == sorted(comp.atoms)
    assert _flow_row(backend, flow_uuid) == (states.SUCCESS, 0, 0, 0)


class Boom(task.Task):
    """Fails when the driver says so (``_drive(fail=...)``); its revert is a plain one."""

    def execute(self, x: int) -> int:
        return x


def test_a_compensation_wave_is_held_to_the_window(any_db_url: str) -> None:
    """``linear(unordered(20), f)``: f fails, and once f is reverted its 20 predecessors are all
    ready to revert: only the window's room is queued, the rest are held and refilled."""
    flow = linear_flow.Flow("fan-then-fail").add(fan(20), Boom("f"))
    backend, comp, flow_uuid = _prepared(any_db_url, flow)
    first = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    ran = _drive(backend, comp, flow_uuid, first, fail="f")
    assert sorted(ran) == sorted(comp.atoms)
    assert _flow_row(backend, flow_uuid) == (states.REVERTED, 0, 0, 0)
    assert set(_states(backend, flow_uuid).values()) == {states.REVERTED}


def test_the_reverts_of_a_retry_round_are_held_to_the_window(any_db_url: str) -> None:
    """A scope ``linear(unordered(12), f)`` retried after f fails: its 12 reverts come in window-sized waves."""
    sub = linear_flow.Flow("sub", retry=retry.Times(2, name="r", provides="attempt")).add(
        unordered_flow.Flow("inner").add(*(Square(f"w{i:02d}", provides=f"v{i:02d}") for i in range(12))),
        Boom("f"),
    )
    backend, comp, flow_uuid = _prepared(any_db_url, linear_flow.Flow("retried").add(sub))
    first = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    ran = _drive(backend, comp, flow_uuid, first, fail="f", fail_times=1)
    assert ran.count("r") == 2 and ran.count("f") == 2 and ran.count("w00") == 2
    assert _flow_row(backend, flow_uuid) == (states.SUCCESS, 0, 0, 0)


@pytest.mark.parametrize("retried", [False, True], ids=["compensation", "retry-round"])
def test_a_redrive_mid_compensation_queues_only_a_window_of_reverts(any_db_url: str, retried: bool) -> None:
    """control.start (resume, sweep) on a flow half-way through a revert wave recomputes what is held."""
    fan_then_fail = linear_flow.Flow("sub", retry=retry.Times(2, name="r", provides="attempt") if retried else None)
    fan_then_fail.add(fan(20), Boom("f"))
    backend, comp, flow_uuid = _prepared(any_db_url, linear_flow.Flow("outer").add(fan_then_fail))
    first = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    _drive(backend, comp, flow_uuid, first, fail="f", fail_times=1, reverts=3)
    again = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    assert 0 < len(again.revert) <= WINDOW and _in_flight(backend, flow_uuid) <= WINDOW
    _drive(backend, comp, flow_uuid, again, fail="f", fail_times=0)
    assert _flow_row(backend, flow_uuid)[:3] == ((states.SUCCESS if retried else states.REVERTED), 0, 0)


def test_a_reclaim_refills_only_the_window(any_db_url: str) -> None:
    """The sweep resets atoms whose worker died and refills: with its window, not the default one."""
    backend, comp, flow_uuid = _prepared(any_db_url)
    first = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    for name in first.execute:  # claimed by a worker that then dies
        assert steps.begin(backend, comp, flow_uuid, name, first.epoch, EXECUTE, "w:1").verdict is steps.Verdict.RUN
    outcome = reclaim.reclaim(backend, comp, flow_uuid, now=utcnow() + dt.timedelta(hours=1), heartbeat_timeout=1.0,
                              max_deliveries=5, owner="sweeper", window=WINDOW)
    assert outcome.action == "reclaimed" and outcome.dispatch is not None
    assert sorted(outcome.dispatch.execute) == sorted(first.execute)
    assert _in_flight(backend, flow_uuid) == WINDOW
    assert len(_drive(backend, comp, flow_uuid, outcome.dispatch)) == ATOMS
    assert _flow_row(backend, flow_uuid) == (states.SUCCESS, 0, 0, 0)


def _states(backend: Any, flow_uuid: str) -> dict[str, str]:
    def read(session: Any) -> dict[str, str]:
        return dict(session.execute(select(AtomRow.name, AtomRow.state).where(AtomRow.flow_uuid == flow_uuid)).all())

    return backend.run(read)


def test_held_atoms_never_start_once_the_flow_fails(any_db_url: str) -> None:
    backend, comp, flow_uuid = _prepared(any_db_url)
    first = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    ran = _drive(backend, comp, flow_uuid, first, fail=first.execute[0])
    # queued atoms not started when the failure is recorded are refused; held ones never queued
    assert ran == [first.execute[0]]

    def states_of(session: Any) -> dict[str, str]:
        return dict(session.execute(select(AtomRow.name, AtomRow.state).where(AtomRow.flow_uuid == flow_uuid)).all())

    atom_states = backend.run(states_of)
    assert sum(1 for s in atom_states.values() if s == states.PENDING) == ATOMS - 1
    assert atom_states[first.execute[0]] == states.REVERTED
    assert _flow_row(backend, flow_uuid)[:2] == (states.REVERTED, 0)


def test_resume_after_suspend_recomputes_what_is_held(any_db_url: str) -> None:
    backend, comp, flow_uuid = _prepared(any_db_url)
    first = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    control.suspend(backend, comp, flow_uuid)
    # the queued messages are refused by the suspending flow; the flow ends SUSPENDED
    for name in first.execute:
        assert steps.begin(backend, comp, flow_uuid, name, first.epoch, EXECUTE, "w:1").verdict is steps.Verdict.REFUSE
        steps.refuse(backend, comp, flow_uuid, name, first.epoch, "w:1", EXECUTE)
    assert _flow_row(backend, flow_uuid)[0] == states.SUSPENDED
    again = control.start(backend, comp, flow_uuid, owner="test", window=WINDOW)
    assert len(again.execute) == WINDOW
    assert _flow_row(backend, flow_uuid) == (states.RUNNING, WINDOW, ATOMS - WINDOW, WINDOW)
    assert len(_drive(backend, comp, flow_uuid, again)) == ATOMS
    assert _flow_row(backend, flow_uuid)[0] == states.SUCCESS


def test_embedded_engine_runs_a_flow_wider_than_its_window(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERYFLOW_DISPATCH_WINDOW", str(WINDOW))
    results = engines.run(fan(), store={"x": 3}, backend=sqlite_url)
    assert [results[f"y{i:02d}"] for i in range(ATOMS)] == [9] * ATOMS


#: (logbook URL, flow id) the probes below look at, and the in-flight counts they saw
_PROBED: dict[str, Any] = {}


class InFlightProbe(task.Task):
    """Reads, while it executes, how many atoms of its flow are queued or running."""

    def execute(self, x: int) -> int:
        url, flow_uuid = _PROBED["where"]
        _PROBED["seen"].append(_in_flight(fetch(url), flow_uuid))
        return x * x

    def revert(self, x: int, **kwargs: Any) -> None:
        url, flow_uuid = _PROBED["where"]
        _PROBED["reverts"].append(_in_flight(fetch(url), flow_uuid))


class Fails(task.Task):
    def execute(self, x: int) -> int:
        raise ValueError("the last atom fails")


def test_embedded_engine_holds_a_later_wave_to_its_window(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERYFLOW_DISPATCH_WINDOW", str(WINDOW))
    width = 20
    flow = linear_flow.Flow("head-then-fan").add(
        Square("a", provides="y"),
        unordered_flow.Flow("fan").add(*(InFlightProbe(f"p{i:02d}", provides=f"y{i:02d}") for i in range(width))),
    )
    engine = engines.load(flow, store={"x": 3}, backend=sqlite_url)
    engine.prepare()
    _PROBED.update(where=(sqlite_url, engine.flow_uuid), seen=[], reverts=[])
    engine.run(timeout=60)
    results = engine.storage.fetch_all()
    assert [results[f"y{i:02d}"] for i in range(width)] == [9] * width
    assert len(_PROBED["seen"]) == width and max(_PROBED["seen"]) <= WINDOW, _PROBED["seen"]


def test_embedded_engine_holds_a_compensation_wave_to_its_window(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELERYFLOW_DISPATCH_WINDOW", str(WINDOW))
    width = 20
    flow = linear_flow.Flow("fan-then-fail").add(
        unordered_flow.Flow("fan").add(*(InFlightProbe(f"p{i:02d}", provides=f"y{i:02d}") for i in range(width))),
        Fails("f"),
    )
    engine = engines.load(flow, store={"x": 3}, backend=sqlite_url)
    engine.prepare()
    _PROBED.update(where=(sqlite_url, engine.flow_uuid), seen=[], reverts=[])
    with pytest.raises(ValueError, match="the last atom fails"):
        engine.run(timeout=60)
    assert engine.storage.get_flow_state() == states.REVERTED
    assert len(_PROBED["reverts"]) == width and max(_PROBED["seen"] + _PROBED["reverts"]) <= WINDOW, _PROBED


def test_a_wide_flow_is_persisted_and_run_on_every_logbook(any_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide enough for PostgreSQL's COPY path in create_flow (control.COPY_THRESHOLD), and for refills."""
    width = control.COPY_THRESHOLD + 50
    monkeypatch.setenv("CELERYFLOW_DISPATCH_WINDOW", "64")
    engine = engines.load(fan(width), store={"x": 3}, backend=any_db_url)
    engine.prepare()
    backend = fetch(any_db_url)

    def rows(session: Any) -> list[tuple[Any, ...]]:
        return session.execute(
            select(AtomRow.name, AtomRow.state, AtomRow.intention, AtomRow.queued, AtomRow.waiting, AtomRow.kind)
            .where(AtomRow.flow_uuid == engine.flow_uuid).order_by(AtomRow.name)
        ).all()

    persisted = backend.run(rows)
    names = sorted(f"sq{i:02d}" for i in range(width))
    assert [tuple(r) for r in persisted] == [(n, states.PENDING, states.EXECUTE, False, 0, "task") for n in names]
    engine.run(timeout=120)
    results = engine.storage.fetch_all()
    assert all(results[f"y{i:02d}"] == 9 for i in range(width))
