"""Corrupt job records are trashed with a reason the first time they are read: nobody loops on them."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from celeryflow import states
from celeryflow.conductors import backends as conductor_backends
from celeryflow.exceptions import NotFound
from celeryflow.jobs.backends.base import JobBoard
from celeryflow.jobs.backends.impl_redis import RedisJobBoard
from celeryflow.jobs.backends.impl_sql import SQLJobBoard
from celeryflow.jobs.backends.sql_tables import JobRow
from tests.jobs import flows


def corrupt(board: JobBoard, job_uuid: str, how: str) -> None:
    """Damage a stored job the way a bad deploy, a manual edit or a foreign writer would."""
    if isinstance(board, RedisJobBoard):
        client = board.client
        key = board._job_key(job_uuid)
        if how == "json":
            client.hset(key, "details", "{not json")
        elif how == "bytes":
            client.hset(key, "details", b"\xff\xfe\x00garbage")
        elif how == "priority":
            client.hset(key, "priority", "banana")
        elif how == "type":
            client.hset(key, "details", '["a", "list"]')
        elif how == "hash":
            client.delete(key)
        return
    assert isinstance(board, SQLJobBoard)
    damage: dict[str, dict[str, Any]] = {
        "json": {"details": "{not json"},
        "bytes": {"details": "\ufffd\ufffdgarbage"},
        "priority": {"priority": 42},
        "type": {"details": '["a", "list"]'},
        "hash": {"name": ""},
    }
    values = damage[how]
    board.backend.run(lambda s: s.execute(update(JobRow).where(JobRow.uuid == job_uuid).values(**values)))


HOW = ["json", "bytes", "priority", "type", "hash"]


def test_corrupt_jobs_are_trashed_once_with_a_reason(board: JobBoard) -> None:
    first = board.post("good-1")
    bad = {how: board.post(f"bad-{how}", details={"n": 1}) for how in HOW}
    last = board.post("good-2")
    for how, job in bad.items():
        corrupt(board, job.uuid, how)
    assert [j.uuid for j in board.iterjobs()] == [first.uuid, last.uuid]
    assert [j.uuid for j in board.iterjobs()] == [first.uuid, last.uuid]
    assert board.job_count == 2
    trashed = {t.uuid: t for t in board.iter_trash()}
    assert set(trashed) == {j.uuid for j in bad.values()}
    for job in bad.values():
        reason = trashed[job.uuid].reason or ""
        assert reason.startswith("corrupt job record"), reason
        assert board.state_of(job) == states.COMPLETE
    assert "JSON" in (trashed[bad["json"].uuid].reason or "")
    assert "rank" in (trashed[bad["priority"].uuid].reason or "")
    assert "list" in (trashed[bad["type"].uuid].reason or "")
    assert trashed[bad["json"].uuid].raw_details == "{not json"


def test_get_job_of_a_corrupt_record_trashes_it(board: JobBoard) -> None:
    job = board.post("bad")
    corrupt(board, job.uuid, "json")
    with pytest.raises(NotFound, match="trash"):
        board.get_job(job.uuid)
    assert board.job_count == 0
    assert len(list(board.iter_trash())) == 1


def test_a_conductor_does_not_loop_on_corrupt_details(board: JobBoard, tmp_path: Path) -> None:
    trace = str(tmp_path / "trace")
    bad = board.post("bad", details={"flow_uuid": "x"}, priority="VERY_HIGH")
    corrupt(board, bad.uuid, "bytes")
    good = board.post_flow(flows.three_steps, factory_args=[trace])
    conductor = conductor_backends.fetch("blocking", "c1", board, wait_timeout=0.05)
    events: list[str] = []
    conductor.notifier.register(conductor.notifier.ANY, lambda e, d: events.append(f"{e} {d['job'].uuid}"))
    reads = 0
    original = board.iterjobs

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return original(*args, **kwargs)

    board.iterjobs = counting  # type: ignore[method-assign]
    began = time.monotonic()
    assert conductor.run(max_dispatches=1) == 1
    assert events == [f"job_consumed {good.uuid}"]
    assert time.monotonic() - began < 10
    # then an idle conductor with nothing left: a few looks per second, no spinning, no new trash
    thread = threading.Thread(target=conductor.run, daemon=True)
    reads = 0
    thread.start()
    time.sleep(1.0)
    conductor.stop()
    assert conductor.wait(10)
    assert reads < 40
    trash = list(board.iter_trash())
    assert [t.uuid for t in trash] == [bad.uuid]
    assert board.job_count == 0
