"""The embedded default sweeps its own flows in process, like a conductor.

A dispatch that committed but failed to publish leaves atoms queued with no message;
the conductor's sweep sends them again. The embedded default has no conductor: it runs
the same sweep in a daemon thread, so ``run()`` still finishes. The publish failure is
injected at our own boundary (``dispatch.publish`` in the caller, ``tasks.publish`` in
the worker), once; liveness is shortened so the sweep acts within the test.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from kombu.exceptions import OperationalError

from celeryflow import engines, task
from celeryflow.patterns import linear_flow, unordered_flow
from celeryflow.runtime import dispatch, embedded, tasks

RUN_TIMEOUT = 15.0


class Give(task.Task):
    def execute(self) -> int:
        return 2


class Twice(task.Task):
    def execute(self, x: int) -> int:
        return 2 * x


@pytest.fixture(autouse=True)
def quick_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    # A message counts as lost after heartbeat_timeout without progress (60 s by default).
    monkeypatch.setenv("CELERYFLOW_HEARTBEAT_TIMEOUT", "1")
    monkeypatch.setenv("CELERYFLOW_HEARTBEAT_INTERVAL", "0.25")


def _publish_fails_once(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[Any]:
    """``module.publish`` raises for the first dispatch that has something to send."""
    real = module.publish
    failed: list[Any] = []

    def flaky(app: Any, comp: Any, what: Any, *args: Any, **kwargs: Any) -> None:
        if what and not failed:
            failed.append(list(what.execute))
            raise OperationalError("the broker went away (injected)")
        real(app, comp, what, *args, **kwargs)

    monkeypatch.setattr(module, "publish", flaky)
    return failed


def _flow() -> Any:
    return linear_flow.Flow("f").add(
        Give("a", provides="x"),
        unordered_flow.Flow("both").add(Twice("b", provides="y"), Twice("c", provides="z")),
    )


def test_embedded_run_finishes_when_the_first_publish_after_the_commit_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = _publish_fails_once(monkeypatch, dispatch)
    engine = engines.load(_flow(), backend=f"sqlite:///{tmp_path / 'logbook.db'}")
    engine.run(timeout=RUN_TIMEOUT)
    assert failed == [["a"]]
    assert engine.storage.fetch_all() == {"x": 2, "y": 4, "z": 4}


def test_embedded_run_finishes_when_a_worker_could_not_publish_the_successors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = _publish_fails_once(monkeypatch, tasks)
    engine = engines.load(_flow(), backend=f"sqlite:///{tmp_path / 'logbook.db'}")
    engine.run(timeout=RUN_TIMEOUT)
    assert [sorted(names) for names in failed] == [["b", "c"]]
    assert engine.storage.fetch_all() == {"x": 2, "y": 4, "z": 4}


def test_the_embedded_sweep_is_a_daemon_that_stops_cleanly(tmp_path: Path) -> None:
    engine = engines.load(_flow(), backend=f"sqlite:///{tmp_path / 'logbook.db'}")
    engine.run(timeout=RUN_TIMEOUT)
    sweeping = [t for t in threading.enumerate() if t.name == embedded.SWEEP_THREAD]
    assert len(sweeping) == 1 and sweeping[0].daemon
    embedded.stop_sweeping()
    assert not sweeping[0].is_alive()
    # started again, lazily, by the next embedded flow
    engines.load(_flow(), backend=f"sqlite:///{tmp_path / 'logbook.db'}").run(timeout=RUN_TIMEOUT)
    assert [t for t in threading.enumerate() if t.name == embedded.SWEEP_THREAD]
