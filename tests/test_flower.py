"""Flower shows celeryflow's tasks readably and never shows store values.

A real ``celery worker`` process (``-E``) on a real Redis broker runs a flow that
succeeds and one that fails and is compensated; Flower runs in this process (on
its own IOLoop thread) and ``/api/tasks`` is read over HTTP.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from celeryflow.handle import submit
from tests.contrib.atoms import SECRET, order_flow, order_store
from tests.support.procs import ProcessGroup, celery_worker_cmd, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]


class InProcessFlower:
    """Flower on an ephemeral port, its IOLoop in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port: int | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="flower", daemon=True)

    def _run(self) -> None:
        try:
            from flower.app import Flower
            from flower.options import default_options
            from tornado.ioloop import IOLoop

            asyncio.set_event_loop(asyncio.new_event_loop())
            self.io_loop = IOLoop.current()
            default_options.port = 0
            default_options.address = "127.0.0.1"
            self.flower = Flower(capp=self.app, options=default_options, io_loop=self.io_loop)
            self.port = self.flower.start_http_server()
            self.io_loop.add_callback(self._ready.set)
            self.flower.start()
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    def start(self) -> InProcessFlower:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"Flower did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        self.io_loop.add_callback(self.flower.stop)
        self._thread.join(15)

    def tasks(self) -> dict[str, dict[str, Any]]:
        response = requests.get(f"http://127.0.0.1:{self.port}/api/tasks", timeout=10)
        response.raise_for_status()
        data: dict[str, dict[str, Any]] = response.json()
        return data


@pytest.fixture
def stack(
    redis_url: str, postgres_url: str, process_group: ProcessGroup, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    env = {
        "CELERYFLOW_BROKER_URL": redis_url,
        "CELERYFLOW_BACKEND": postgres_url,
        "CELERYFLOW_IMPORTS": "tests.contrib.atoms",
    }
    process_group.env.update(env)
    process_group.start("worker", celery_worker_cmd(hostname="flower-test@%h", concurrency=2))
    process_group.wait_for_log("worker", r"ready\.", timeout=60)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FLOWER_UNAUTHENTICATED_API", "true")
    install_module: Any = importlib.import_module("celeryflow.install")
    previous = install_module._installed
    from celeryflow_tasks.app import make_app

    app = make_app("flower-test")
    flower = InProcessFlower(app).start()
    try:
        _wait_until_flower_listens(app, flower)
        yield app, flower
    finally:
        flower.stop()
        install_module._installed = previous


PROBE = "celeryflow-tests.flower-probe"


def _wait_until_flower_listens(app: Any, flower: InProcessFlower) -> None:
    """Flower binds its event queue after its HTTP server is up: events sent before are lost.

    Send probe tasks (their task-sent event is all Flower needs; the worker drops the
    unregistered name) until Flower has seen one.
    """
    sent: list[str] = []

    def listening() -> bool:
        sent.append(app.send_task(PROBE).id)
        return any(probe in flower.tasks() for probe in sent)

    wait_for(listening, timeout=30, interval=0.2, message="Flower never received a task-sent event")


def _flow_tasks(flower: InProcessFlower) -> dict[str, dict[str, Any]]:
    return {tid: task for tid, task in flower.tasks().items() if task.get("name") != PROBE}


def test_flower_names_atoms_and_masks_store_values(stack: Any, process_group: ProcessGroup) -> None:
    app, flower = stack
    ok = submit(order_flow, store=order_store("A-1"), app=app)
    bad = submit(order_flow, store=order_store("A-2", decline=True), app=app)
    assert ok.wait(timeout=60)["notified"] is True
    with pytest.raises(Exception, match="card declined"):
        bad.wait(timeout=60)

    # ok: 3 executes; bad: reserve + charge executed (notify never ran), both reverted.
    expected = {
        "celeryflow: place-order / reserve_stock",
        "celeryflow: place-order / charge_card",
        "celeryflow: place-order / notify",
        "celeryflow: place-order / reserve_stock (revert)",
        "celeryflow: place-order / charge_card (revert)",
    }

    def seen() -> dict[str, dict[str, Any]] | None:
        tasks = _flow_tasks(flower)
        names = {t.get("name") for t in tasks.values()}
        # every event of every task in (a task-failed event can arrive before the task's name)
        done = all(t.get("state") in ("SUCCESS", "FAILURE") and t.get("name") for t in tasks.values())
        return tasks if expected <= names and done and len(tasks) >= 7 else None

    tasks = wait_for(seen, timeout=30, interval=0.5,
                     message=lambda: f"Flower tasks: {json.dumps(_flow_tasks(flower), indent=1)[:3000]}")

    by_flow: dict[str, list[dict[str, Any]]] = {ok.id: [], bad.id: []}
    for task in tasks.values():
        assert task["name"].startswith("celeryflow: place-order / "), json.dumps(task)
        args = task.get("args") or ""
        flow_id = next(fid for fid in by_flow if fid in args)  # argsrepr names the flow id
        by_flow[flow_id].append(task)
        assert "atom=" in args and "epoch=" in args
        assert task.get("kwargs") in ("{}", "", None)
    assert sorted(t["name"].rsplit(" / ", 1)[1] for t in by_flow[ok.id]) == ["charge_card", "notify", "reserve_stock"]
    assert sorted(t["name"].rsplit(" / ", 1)[1] for t in by_flow[bad.id]) == [
        "charge_card", "charge_card (revert)", "reserve_stock", "reserve_stock (revert)",
    ]
    # Celery sees the truth: the atom that raised is a FAILED task with its exception's type and
    # message (Flower's Failed tab, task-failed events); everything else succeeded
    failed = [t for t in tasks.values() if t.get("state") == "FAILURE"]
    assert [t["name"] for t in failed] == ["celeryflow: place-order / charge_card"], json.dumps(tasks)
    assert bad.id in failed[0]["args"]
    assert "PaymentDeclined" in failed[0]["exception"] and "card declined" in failed[0]["exception"]
    assert all(t.get("state") == "SUCCESS" for t in tasks.values() if t not in failed)
    # the worker knows the tasks by their real names; the shadow name is for humans
    assert all(t.get("worker", "").startswith("flower-test@") for t in tasks.values())

    # No store value reaches Flower: not the secret token, not the order id, not the amount
    # (the failed atom's own exception message names its order: that is the atom's text, and
    # what a Celery user expects to see in the Failed tab).
    dump = json.dumps(tasks)
    assert SECRET not in dump
    shown = json.dumps({tid: {k: v for k, v in t.items() if k not in ("exception", "traceback")}
                        for tid, t in tasks.items()})
    assert "A-1" not in dump and "A-2" not in shown
    # ... nor the worker's log (argsrepr is what Celery logs too)
    assert SECRET not in process_group.output("worker")
    assert "Task celeryflow: place-order / notify[" in process_group.output("worker")
