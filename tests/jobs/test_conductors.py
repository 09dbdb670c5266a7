"""Conductors on every board, with the embedded default app (atoms run in this process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeryflow import registry, states
from celeryflow.conductors import backends as conductor_backends
from celeryflow.conductors.base import Conductor
from celeryflow.exceptions import ConfigurationError, JobFailure
from celeryflow.jobs.backends.base import JobBoard
from celeryflow.runtime import context
from tests.jobs import flows
from tests.jobs.conftest import MakeBoard


class Events:
    """Records a conductor's job events."""

    def __init__(self, conductor: Conductor) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        conductor.notifier.register(conductor.notifier.ANY, lambda event, details: self.items.append((event, details)))

    def kinds(self) -> list[str]:
        return [event for event, _ in self.items]

    def of(self, job_uuid: str) -> list[tuple[str, dict[str, Any]]]:
        return [(e, d) for e, d in self.items if d["job"].uuid == job_uuid]


@pytest.fixture
def trace(tmp_path: Path) -> str:
    return str(tmp_path / "trace.log")


@pytest.fixture
def conductors() -> Iterator[list[Conductor]]:
    made: list[Conductor] = []
    yield made
    for conductor in made:
        conductor.stop()
        conductor.wait(30)


def make_conductor(made: list[Conductor], board: JobBoard, kind: str = "blocking", name: str = "c1",
                   **options: Any) -> Conductor:
    options.setdefault("wait_timeout", 0.1)
    conductor = conductor_backends.fetch(kind, name, board, **options)
    made.append(conductor)
    return conductor


def in_thread(conductor: Conductor, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=conductor.run, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def test_blocking_conductor_runs_three_flows_and_returns_after_exactly_three(
    board: JobBoard, conductors: list[Conductor], trace: str
) -> None:
    posted = [board.post_flow(flows.three_steps, factory_args=[trace]) for _ in range(4)]
    conductor = make_conductor(conductors, board)
    events = Events(conductor)
    began = time.monotonic()
    assert conductor.run(max_dispatches=3) == 3
    elapsed = time.monotonic() - began
    assert events.kinds() == ["job_consumed"] * 3
    assert [d["job"].uuid for _, d in events.items] == [j.uuid for j in posted[:3]]  # FIFO
    assert all(d["state"] == states.SUCCESS for _, d in events.items)
    assert board.job_count == 1 and next(board.iterjobs()).uuid == posted[3].uuid
    lines = flows.read_trace(trace)
    assert sum(line.startswith("done step") for line in lines) == 9
    persistence = board.persistence
    assert persistence is not None
    for job in posted[:3]:
        assert persistence.get_flow_details(job.flow_uuid or "").state == states.SUCCESS
    assert persistence.get_flow_details(posted[3].flow_uuid or "").state == states.PENDING
    assert conductor.wait(0) and not conductor.dispatching
    print(f"\n3 jobs of 3 atoms dispatched in {elapsed:.2f}s")


def test_max_dispatches_zero_returns_at_once(board: JobBoard, conductors: list[Conductor], trace: str) -> None:
    board.post_flow(flows.three_steps, factory_args=[trace])
    assert make_conductor(conductors, board).run(max_dispatches=0) == 0
    assert board.job_count == 1


def test_higher_priority_jobs_run_first(board: JobBoard, conductors: list[Conductor], trace: str) -> None:
    low = board.post_flow(flows.three_steps, factory_args=[trace], priority="LOW")
    high = board.post_flow(flows.three_steps, factory_args=[trace], priority="VERY_HIGH")
    conductor = make_conductor(conductors, board)
    events = Events(conductor)
    assert conductor.run(max_dispatches=2) == 2
    assert [d["job"].uuid for _, d in events.items] == [high.uuid, low.uuid]


def test_reverted_flow_is_consumed_and_failed_compensation_is_trashed(
    board: JobBoard, conductors: list[Conductor], trace: str
) -> None:
    reverted = board.post_flow(flows.failing, factory_args=[trace])
    failed = board.post_flow(flows.unrevertable, factory_args=[trace])
    conductor = make_conductor(conductors, board)
    events = Events(conductor)
    assert conductor.run(max_dispatches=2) == 2
    (kind, details), = events.of(reverted.uuid)
    assert (kind, details["state"]) == ("job_consumed", states.REVERTED)
    (kind, details), = events.of(failed.uuid)
    assert (kind, details["state"]) == ("job_trashed", states.FAILURE)
    assert "cannot be undone" in details["reason"]
    (trashed,) = list(board.iter_trash())
    assert trashed.uuid == failed.uuid and "FAILURE" in (trashed.reason or "")


def test_unregistered_factory_is_trashed_with_a_reason_and_the_conductor_keeps_running(
    board: JobBoard, conductors: list[Conductor], trace: str
) -> None:
    ref = "tests.jobs.flows:retired_factory"
    registry.register(flows.temporary, ref=ref)
    try:
        doomed = board.post_flow(flows.temporary, factory_args=[trace])
    finally:
        registry.unregister(ref)
    # the poster (a web process) had the factory; this conductor's process does not
    assert doomed.flow_uuid is not None
    context.forget_live(doomed.flow_uuid)
    good = board.post_flow(flows.three_steps, factory_args=[trace])
    conductor = make_conductor(conductors, board)
    events = Events(conductor)
    assert conductor.run(max_dispatches=2) == 2
    assert events.kinds() == ["job_trashed", "job_consumed"]
    (_, details), = events.of(doomed.uuid)
    assert ref in details["reason"] and "not registered" in details["reason"]
    assert events.of(good.uuid)[0][1]["state"] == states.SUCCESS
    (trashed,) = list(board.iter_trash())
    assert trashed.uuid == doomed.uuid and ref in (trashed.reason or "")
    assert trashed.trashed_by == "c1"
    assert board.job_count == 0
    assert not any("only" in line for line in flows.read_trace(trace))


def test_jobs_that_name_no_flow_or_a_missing_flow_are_trashed(
    board: JobBoard, conductors: list[Conductor]
) -> None:
    nothing = board.post("no-flow", details={"what": "ever"})
    missing = board.post("missing", details={"flow_uuid": "00000000-0000-4000-8000-000000000000"})
    conductor = make_conductor(conductors, board)
    events = Events(conductor)
    assert conductor.run(max_dispatches=2) == 2
    assert events.kinds() == ["job_trashed", "job_trashed"]
    assert "names no flow" in events.of(nothing.uuid)[0][1]["reason"]
    assert "not in the logbook" in events.of(missing.uuid)[0][1]["reason"]
    assert board.job_count == 0


def test_nonblocking_conductor_runs_jobs_concurrently_within_its_bound(
    board: JobBoard, conductors: list[Conductor], trace: str
) -> None:
    for i in range(6):
        board.post_flow(flows.slow, factory_args=[trace, f"slow{i}", 0.4])
    conductor = make_conductor(conductors, board, "nonblocking", max_simultaneous_jobs=3)
    events = Events(conductor)
    began = time.monotonic()
    assert conductor.run(max_dispatches=6) == 6
    elapsed = time.monotonic() - began
    assert events.kinds() == ["job_consumed"] * 6
    # the most atoms running at once, from the trace
    running = peak = 0
    for line in flows.read_trace(trace):
        running += 1 if line.startswith("start") else -1
        peak = max(peak, running)
    assert 2 <= peak <= 3
    assert elapsed < 6 * 0.4  # faster than one at a time
    print(f"\n6 jobs of 0.4 s, 3 at a time: {elapsed:.2f}s")


def test_stop_suspends_running_flows_and_another_conductor_resumes_them(
    board: JobBoard, conductors: list[Conductor], trace: str, tmp_path: Path
) -> None:
    gate = str(tmp_path / "gate")
    job = board.post_flow(flows.three_steps, factory_args=[trace], factory_kwargs={"gate": gate})
    first = make_conductor(conductors, board, name="first")
    events = Events(first)
    thread = in_thread(first)
    wait_until(lambda: "start step2" in " ".join(flows.read_trace(trace)))
    first.stop()
    time.sleep(0.3)
    assert thread.is_alive()  # step2 is running: suspension waits for it
    Path(gate).touch()
    assert first.wait(30)
    thread.join(5)
    (kind, details), = events.items
    assert (kind, details["state"]) == ("job_abandoned", states.SUSPENDED)
    persistence = board.persistence
    assert persistence is not None and job.flow_uuid is not None
    assert persistence.get_flow_details(job.flow_uuid).state == states.SUSPENDED
    assert board.find_owner(job) is None and job.state == states.UNCLAIMED

    second = make_conductor(conductors, board, name="second")
    second_events = Events(second)
    assert second.run(max_dispatches=1) == 1
    assert second_events.kinds() == ["job_consumed"]
    assert persistence.get_flow_details(job.flow_uuid).state == states.SUCCESS
    done = [line.split()[1] for line in flows.read_trace(trace) if line.startswith("done")]
    assert done == ["step1", "step2", "step3"]  # each atom executed once


def test_a_lost_claim_stops_the_conductor_following_the_job(
    make_board: MakeBoard, conductors: list[Conductor], trace: str, tmp_path: Path
) -> None:
    board = make_board(claim_expiry=0.3)
    gate = str(tmp_path / "gate")
    job = board.post_flow(flows.three_steps, factory_args=[trace], factory_kwargs={"gate": gate})
    conductor = make_conductor(conductors, board, name="stalled")
    events = Events(conductor)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise JobFailure("claimed by 'thief'")

    board.extend_claim = refuse  # type: ignore[method-assign]
    thread = in_thread(conductor, max_dispatches=1)
    thread.join(30)
    assert not thread.is_alive()
    (kind, details), = events.items
    assert kind == "job_abandoned" and details["lost"] and "thief" in details["reason"]
    assert job.state in (states.UNCLAIMED, states.CLAIMED)  # still on the board for its new owner
    Path(gate).touch()
    persistence = board.persistence
    assert persistence is not None and job.flow_uuid is not None
    wait_until(lambda: persistence.get_flow_details(job.flow_uuid).state == states.SUCCESS)


def test_fetch_validates_kind_and_options(board: JobBoard) -> None:
    with pytest.raises(ConfigurationError, match="blocking"):
        conductor_backends.fetch("parallel", "c", board)
    with pytest.raises(ConfigurationError, match="max_simultaneous_jobs"):
        conductor_backends.fetch("blocking", "c", board, max_simultaneous_jobs=2)
    with pytest.raises(ConfigurationError):
        conductor_backends.fetch("nonblocking", "c", board, concurrency=0)
    conductor = conductor_backends.fetch("nonblocking", "c", board, concurrency=5)
    assert conductor.max_simultaneous_jobs == 5  # type: ignore[attr-defined]


def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_a_job_posted_with_a_book_runs_every_flow_of_the_book(
    board: JobBoard, conductors: list[Conductor], tmp_path: Path
) -> None:
    import uuid

    from celeryflow import engines

    book_uuid = str(uuid.uuid4())
    traces = [str(tmp_path / f"trace{i}") for i in range(2)]
    flow_ids = []
    for trace in traces:
        engine = engines.load_from_factory(flows.three_steps, factory_args=[trace], backend=board.persistence,
                                           book=book_uuid)
        engine.prepare()
        flow_ids.append(engine.flow_uuid)
    job = board.post("a-book", book=book_uuid)
    assert job.book_uuid == book_uuid
    assert job.book is not None and {str(fd.uuid) for fd in job.book} == set(flow_ids)
    conductor = make_conductor(conductors, board)
    events = Events(conductor)
    assert conductor.run(max_dispatches=1) == 1
    (kind, details), = events.items
    assert kind == "job_consumed" and sorted(details["flow_uuids"]) == sorted(flow_ids)
    for trace in traces:
        assert [line.split()[1] for line in flows.read_trace(trace) if line.startswith("done")] == [
            "step1", "step2", "step3"]


def test_job_wait_returns_when_the_job_is_complete(board: JobBoard, conductors: list[Conductor],
                                                   trace: str) -> None:
    job = board.post_flow(flows.three_steps, factory_args=[trace])
    assert not job.wait(0.1)
    thread = in_thread(make_conductor(conductors, board), max_dispatches=1)
    assert job.wait(30)
    assert job.state == states.COMPLETE
    thread.join(10)


def test_failed_dispatches_back_off_and_the_job_is_retried(
    board: JobBoard, conductors: list[Conductor], trace: str
) -> None:
    from celeryflow.exceptions import StorageFailure

    job = board.post_flow(flows.three_steps, factory_args=[trace])
    conductor = make_conductor(conductors, board, wait_timeout=0.05)
    events = Events(conductor)
    calls: list[float] = []
    original = conductor._load

    def flaky(claimed: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise StorageFailure("the logbook is down")
        return original(claimed)

    conductor._load = flaky  # type: ignore[method-assign,assignment]
    assert conductor.run(max_dispatches=3) == 3
    assert events.kinds() == ["job_abandoned", "job_abandoned", "job_consumed"]
    assert "logbook is down" in events.items[0][1]["reason"]
    assert calls[1] - calls[0] >= 0.1 and calls[2] - calls[1] >= 0.2  # backing off, not a hot loop
    assert job.state == states.COMPLETE
