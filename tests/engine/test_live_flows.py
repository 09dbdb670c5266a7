"""A process keeps the live objects of the flows it submitted only while they matter.

``context._live`` (the flows this process submitted, with their own atom objects) is a
bounded LRU: a flow its engine saw finish is dropped at once, the rest beyond
``context.LIVE_SIZE`` in least-recently-used order. A flow still followed by an engine
(or a handle) keeps its objects whatever the bound, so its atoms' own notifiers still
fire in the embedded worker.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from celeryflow import engines, states, task
from celeryflow.handle import FlowHandle
from celeryflow.patterns import linear_flow
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import AtomRow
from celeryflow.runtime import context

RELEASE = threading.Event()


class Echo(task.Task):
    def execute(self) -> str:
        return "ok"


class Gate(task.Task):
    """Waits for the test to open the gate (bounded: a regression fails, never hangs)."""

    def execute(self) -> str:
        if not RELEASE.wait(15):
            raise TimeoutError("the test never opened the gate")
        return "open"


class Reports(task.Task):
    """Reports progress through its own notifier; records which object ran."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.ran_on: list[int] = []

    def execute(self) -> str:
        self.ran_on.append(id(self))
        self.update_progress(0.5)
        return "reported"


def one(name: str) -> linear_flow.Flow:
    return linear_flow.Flow(name).add(Echo(f"{name}-e"))


def _live_ids() -> list[str]:
    with context._lock:
        return list(context._live)


def test_a_flow_its_engine_saw_finish_is_not_kept_live(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'logbook.db'}"
    ids = []
    for i in range(3):
        engine = engines.load(one(f"f{i}"), backend=url)
        engine.run(timeout=15)
        ids.append(engine.flow_uuid)
    del engine
    gc.collect()
    assert not set(ids) & set(_live_ids())
    with context._lock:
        assert not set(ids) & set(context._reachable)  # nothing else holds them: gone


def test_live_flows_are_bounded_least_recently_used_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "LIVE_SIZE", 3)
    url = f"sqlite:///{tmp_path / 'logbook.db'}"
    ids = []
    for i in range(6):
        engine = engines.load(one(f"p{i}"), backend=url)
        engine.prepare()  # submitted, never run: nobody saw it finish
        ids.append(engine.flow_uuid)
    del engine
    gc.collect()
    assert _live_ids() == ids[-3:]


def test_a_followed_flow_keeps_its_objects_and_their_notifiers(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "LIVE_SIZE", 1)
    RELEASE.clear()
    url = f"sqlite:///{tmp_path / 'logbook.db'}"
    reports = Reports("reports")
    heard: list[float] = []
    reports.notifier.register(task.EVENT_UPDATE_PROGRESS, lambda event, details: heard.append(details["progress"]))
    engine = engines.load(linear_flow.Flow("followed").add(Gate("gate"), reports), backend=url)
    engine.run_async()
    backend = fetch(url)
    query = select(AtomRow.state).where(AtomRow.flow_uuid == engine.flow_uuid, AtomRow.name == "gate")
    deadline = time.monotonic() + 15
    while backend.run(lambda s: s.scalar(query)) != states.RUNNING:
        assert time.monotonic() < deadline, "the gate never started"
        time.sleep(0.01)  # polling the logbook with a deadline
    for i in range(3):  # push the followed flow out of the LRU bound
        engines.load(one(f"o{i}"), backend=url).prepare()
    gc.collect()
    assert engine.flow_uuid not in _live_ids()
    RELEASE.set()
    assert FlowHandle(engine.flow_uuid, _engine=engine).wait(timeout=15) == {}
    assert reports.ran_on == [id(reports)] and heard == [0.0, 0.5, 1.0]  # TaskFlow: 0.0 before, 1.0 after
