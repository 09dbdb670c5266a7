"""TaskFlow's engine names and executor options (#13 item 5)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from celeryflow import engines
from celeryflow.engines.worker_based import worker
from celeryflow.exceptions import ConfigurationError
from celeryflow.patterns import linear_flow, unordered_flow
from tests.porting import engine_atoms as atoms


@pytest.fixture
def logbook(tmp_path: Path) -> str:
    atoms.reset()
    return f"sqlite:///{tmp_path / 'logbook.db'}"


def _fan(n: int) -> unordered_flow.Flow:
    return unordered_flow.Flow("fan").add(*[atoms.Overlap(f"o{i}") for i in range(n)])


@pytest.mark.parametrize(
    ("options", "limit"),
    [
        ({"engine": "serial"}, 1),
        ({"engine": "parallel", "max_workers": 2}, 2),
        ({"engine": "parallel", "executor": ThreadPoolExecutor(max_workers=2)}, 2),
        ({"max_workers": 1}, 1),
    ],
)
def test_at_most_that_many_atoms_of_the_flow_run_at_once(logbook: str, options: dict[str, Any], limit: int) -> None:
    engine = engines.load(_fan(6), backend=logbook, **options)
    engine.run()
    assert 1 <= atoms.peak() <= limit
    assert engine.compile().max_in_flight == limit


def test_the_limit_is_kept_in_the_logbook(logbook: str) -> None:
    engine = engines.load(_fan(3), backend=logbook, engine="serial")
    engine.prepare()
    resumed = engines.load_from_detail(engine.flow_uuid, backend=logbook)
    assert resumed.compile().max_in_flight == 1
    resumed.run()
    assert atoms.peak() == 1


@pytest.mark.parametrize("executor", ["threads", "processes", "GreenThreaded"])
def test_taskflows_executor_strings_are_accepted_without_a_limit(logbook: str, executor: str) -> None:
    engine = engines.load(_fan(2), backend=logbook, executor=executor)
    assert engine.compile().max_in_flight is None
    engine.run()


@pytest.mark.parametrize(("options", "match"), [
    ({"engine": "turbo"}, "Unknown engine 'turbo'"),
    ({"executor": "fibers"}, "Unknown executor 'fibers'"),
    ({"max_workers": 0}, "max_workers must be a positive integer"),
])
def test_bad_engine_options_are_refused_at_load(logbook: str, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        engines.load(_fan(1), backend=logbook, **options)


@pytest.fixture
def memory_worker(logbook: str) -> Iterator[dict[str, Any]]:
    """A TaskFlow-style worker on the in-memory transport, in a thread of this process."""
    conf = {"exchange": "porting-test", "transport": "memory", "transport_options": {"polling_interval": 0.01}}
    w = worker.Worker(topic="w1", tasks=["tests.porting.engine_atoms:Double", "tests.porting.engine_atoms.AddOne"],
                      backend=logbook, **conf)
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    assert w.wait(30), "the worker did not start"
    try:
        yield conf
    finally:
        w.stop()
        thread.join(30)
        assert not thread.is_alive()


def test_worker_based_engine_runs_on_the_workers_of_that_broker(logbook: str, memory_worker: dict[str, Any]) -> None:
    flow = linear_flow.Flow("wbe").add(atoms.Double(), atoms.AddOne())
    engine = engines.load(flow, store={"x": 20}, engine="worker-based", topics=["w1"], backend=logbook,
                          **memory_worker)
    assert not engine.is_embedded and engine.app.conf.task_default_queue == "porting-test"
    seen: list[str] = []
    engine.atom_notifier.register("*", lambda state, details: seen.append(f"{details['atom_name']} {state}"))
    engine.run()
    assert engine.storage.fetch_all() == {"x": 20, "doubled": 40, "result": 41}
    assert seen == ["tests.porting.engine_atoms.Double RUNNING", "tests.porting.engine_atoms.Double SUCCESS",
                    "tests.porting.engine_atoms.AddOne RUNNING", "tests.porting.engine_atoms.AddOne SUCCESS"]


def test_worker_based_engine_on_redis(logbook: str, redis_url: str) -> None:
    w = worker.Worker(exchange="porting-redis", topic="r1", tasks=[atoms.Double, atoms.AddOne], url=redis_url,
                      backend=logbook, threads_count=2)
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    assert w.wait(30)
    try:
        result = engines.run(linear_flow.Flow("wbe-redis").add(atoms.Double(), atoms.AddOne()), store={"x": 1},
                             engine="worker-based", url=redis_url, exchange="porting-redis", backend=logbook)
        assert result["result"] == 3
    finally:
        w.stop()
        thread.join(30)


def test_worker_refuses_tasks_it_cannot_import() -> None:
    with pytest.raises(ConfigurationError, match="no module"):
        worker.Worker(exchange="x", topic="t", tasks=["no_such_module_here"], transport="memory")


def test_worker_based_engine_needs_a_broker(logbook: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELERYFLOW_BROKER_URL", raising=False)
    with pytest.raises(ConfigurationError, match="needs a broker"):
        engines.load(_fan(1), engine="worker-based", backend=logbook)


def test_worker_based_flow_resumes_on_those_workers(logbook: str, memory_worker: dict[str, Any]) -> None:
    flow = linear_flow.Flow("wbe-resume").add(atoms.Double(), atoms.AddOne())
    first = engines.load(flow, store={"x": 4}, engine="worker-based", backend=logbook, **memory_worker)
    first.prepare()
    resumed = engines.load_from_detail(first.flow_uuid, engine="worker-based", backend=logbook, **memory_worker)
    assert resumed.app is first.app
    resumed.run()
    assert resumed.storage.fetch("result") == 9
