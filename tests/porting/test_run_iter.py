"""``Engine.run_iter()`` and the order of notifications (#13 items 2 and 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from celeryflow import engines, states
from celeryflow.patterns import linear_flow
from tests.porting import engine_atoms as atoms


def _chain(n: int) -> linear_flow.Flow:
    flow = linear_flow.Flow("chain")
    for i in range(n):
        flow.add(atoms.Echo(f"echo_{chr(ord('a') + i)}", provides=f"v{i + 1}", rebind={"value": f"v{i}"}))
    return flow


@pytest.fixture
def logbook(tmp_path: Path) -> str:
    atoms.reset()
    return f"sqlite:///{tmp_path / 'logbook.db'}"


def test_run_iter_yields_taskflows_states_around_each_atom(logbook: str) -> None:
    engine = engines.load(_chain(3), store={"v0": ""}, backend=logbook)
    seen: list[str] = []
    for state in engine.run_iter():
        atoms.note(f"yield {state}")
        seen.append(state)
    round_ = ["WAITING", "ANALYZING", "SCHEDULING"]
    assert seen == ["RESUMING", "SCHEDULING", *round_, *round_, "WAITING", "ANALYZING", states.SUCCESS]
    # as in TaskFlow's serial engine, each atom's code runs between SCHEDULING and WAITING
    assert atoms.JOURNAL == [
        "yield RESUMING", "yield SCHEDULING", "code echo_a", "yield WAITING", "yield ANALYZING",
        "yield SCHEDULING", "code echo_b", "yield WAITING", "yield ANALYZING", "yield SCHEDULING",
        "code echo_c", "yield WAITING", "yield ANALYZING", "yield SUCCESS",
    ]
    assert engine.storage.fetch("v3") == "abc"


def test_run_iter_raises_after_yielding_reverted(logbook: str) -> None:
    engine = engines.load(linear_flow.Flow("fails").add(atoms.Boom("boom")), backend=logbook)
    it = engine.run_iter()
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        for state in it:
            seen.append(state)
    assert seen[:2] == ["RESUMING", "SCHEDULING"] and seen[-1] == states.REVERTED


def test_sending_true_suspends(logbook: str) -> None:
    engine = engines.load(_chain(3), store={"v0": ""}, backend=logbook)
    it = engine.run_iter()
    assert next(it) == "RESUMING"
    assert it.send(True) == "SCHEDULING"
    rest = list(it)
    assert rest[-1] == states.SUSPENDED
    assert engine.storage.get_flow_state() == states.SUSPENDED
    # resuming runs what is left, once
    engines.load_from_detail(engine.flow_uuid, backend=logbook).run()
    assert engine.storage.fetch("v3") == "abc"
    assert sorted(atoms.JOURNAL) == ["code echo_a", "code echo_b", "code echo_c"]


def test_atom_running_is_notified_before_the_atoms_code(logbook: str) -> None:
    engine = engines.load(_chain(3), store={"v0": ""}, backend=logbook)
    engine.atom_notifier.register("*", lambda state, details: atoms.note(f"{details['atom_name']} {state}"))
    flow_states: list[tuple[str, Any]] = []
    engine.notifier.register("*", lambda state, details: flow_states.append((state, details["old_state"])))
    engine.run()
    assert atoms.JOURNAL == [
        "echo_a RUNNING", "code echo_a", "echo_a SUCCESS",
        "echo_b RUNNING", "code echo_b", "echo_b SUCCESS",
        "echo_c RUNNING", "code echo_c", "echo_c SUCCESS",
    ]
    # TaskFlow's flow machine: no PENDING or REVERTING notification
    assert flow_states == [(states.RUNNING, states.PENDING), (states.SUCCESS, states.RUNNING)]


def test_failed_flow_notifies_running_then_reverted(logbook: str) -> None:
    engine = engines.load(linear_flow.Flow("fails").add(atoms.Boom("boom")), backend=logbook)
    flow_states: list[tuple[str, Any]] = []
    engine.notifier.register("*", lambda state, details: flow_states.append((state, details["old_state"])))
    with pytest.raises(RuntimeError):
        engine.run()
    assert flow_states == [(states.RUNNING, states.PENDING), (states.REVERTED, states.RUNNING)]


def test_progress_is_reported_at_zero_and_one(logbook: str) -> None:
    echo = atoms.Echo("echo_a")
    heard: list[float] = []
    echo.notifier.register("update_progress", lambda event, details: heard.append(details["progress"]))
    engines.run(linear_flow.Flow("p").add(echo), store={"value": ""}, backend=logbook)
    assert heard == [0.0, 1.0]


def test_run_iter_on_remote_workers(remote_env: Any) -> None:
    flow = linear_flow.Flow("remote-iter").add(atoms.Double(), atoms.AddOne())
    engine = engines.load(flow, store={"x": 20}, app=remote_env.app, backend=remote_env.backend)
    seen = list(engine.run_iter())
    assert seen[:2] == ["RESUMING", "SCHEDULING"] and seen[-1] == states.SUCCESS
    assert {"WAITING", "ANALYZING"} <= set(seen)
    assert engine.storage.fetch("result") == 41


@pytest.fixture(scope="module")
def remote_env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.engine.conftest import FlowEnv
    from tests.support.remote import remote_workers

    tmp = tmp_path_factory.mktemp("porting-remote")
    with remote_workers(tmp, "tests.porting.engine_atoms", "porting-remote") as remote:
        yield FlowEnv("remote", remote.logbook, remote.app, tmp)
