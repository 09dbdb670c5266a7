"""A closed logbook backend is not an outage: nothing waits for it to come back.

An embedded worker thread whose atom finished after its backend was closed (a test's
teardown, a process shutting down) used to retry "could not record" for a minute or
more, holding one of the few embedded pool threads, so a later flow in the same
process queued behind it until its own ``run(timeout=...)`` expired.
"""

from __future__ import annotations

import pytest

from celeryflow.exceptions import BackendClosed, StorageFailure
from celeryflow.persistence import backends
from celeryflow.runtime import outage


def test_a_closed_backend_raises_backend_closed(tmp_path):
    backend = backends.fetch(f"sqlite:///{tmp_path / 'logbook.db'}")
    backend.close()
    with pytest.raises(BackendClosed, match="was closed"):
        backend.run(lambda session: None)
    assert issubclass(BackendClosed, StorageFailure)  # callers catching outages still catch it


def test_recording_on_a_closed_backend_gives_up_at_once():
    slept: list[float] = []

    def record() -> None:
        raise BackendClosed("The logbook backend sqlite:///x was closed: fetch() a new one")

    assert outage.persist(record, "the execute outcome of f/a", patience=600, sleep=slept.append) is None
    assert slept == []


def test_an_outage_is_still_retried():
    slept: list[float] = []
    attempts = iter([StorageFailure("down"), StorageFailure("down"), None])

    def record() -> str:
        exc = next(attempts)
        if exc is not None:
            raise exc
        return "recorded"

    assert outage.persist(record, "the execute outcome of f/a", patience=600, sleep=slept.append) == "recorded"
    assert len(slept) == 2


def test_the_heartbeat_forgets_a_closed_backend(tmp_path):
    from celeryflow.runtime.heartbeat import Heartbeat

    backend = backends.fetch(f"sqlite:///{tmp_path / 'logbook.db'}")
    heartbeat = Heartbeat(interval=60)
    try:
        heartbeat.register(backend, "flow", "atom", "worker", "token")
        backend.close()
        heartbeat.beat()
        assert heartbeat.running() == []
    finally:
        heartbeat.stop()
