"""No raw message addressed to celeryflow's tasks can stop a worker (issue #12, item 10).

Each message below is published with kombu straight onto the queue of one separate
``celery worker`` process, bypassing ``send_task`` (which would refuse to build most of
them). Before the guard, the first one ended the worker with ``Unrecoverable error:
ValueError('too many values to unpack')`` raised in Celery's request code, and every
restarted worker died on it again. Now each is rejected (not requeued) and logged once,
and the worker goes on serving flows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer

from celeryflow.patterns import linear_flow
from celeryflow.runtime.dispatch import EXECUTE_TASK, REVERT_TASK
from tests.engine.atoms import Step
from tests.fixtures_db import postgres_database
from tests.fixtures_services import _claim_redis_db
from tests.support.procs import ProcessGroup, celery_worker_cmd, wait_for
from tests.support.remote import make_remote_app

pytestmark = pytest.mark.services


@dataclass
class OneWorker:
    broker: str
    logbook: str
    app: Any
    group: ProcessGroup


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneWorker]:
    tmp = tmp_path_factory.mktemp("raw")
    for db in _claim_redis_db("raw-messages"):
        with postgres_database() as logbook:
            env = {
                "CELERYFLOW_BROKER_URL": f"redis://127.0.0.1:6379/{db}",
                "CELERYFLOW_BACKEND": logbook,
                "CELERYFLOW_IMPORTS": "tests.engine.atoms",
            }
            with ProcessGroup(tmp, env=env) as group:
                group.start("worker", celery_worker_cmd(hostname="raw@%h", concurrency=1))
                group.wait_for_log("worker", r"ready\.", timeout=60)
                yield OneWorker(env["CELERYFLOW_BROKER_URL"], logbook, make_remote_app(env, "raw"), group)


def _publish(broker: str, task: str, body: bytes, content_type: str, **headers: Any) -> None:
    """Put one message on the default ``celery`` queue exactly as given (protocol 2 headers)."""
    with Connection(broker) as conn:
        producer = Producer(conn.channel(), exchange=Exchange("celery", type="direct"), routing_key="celery")
        producer.publish(
            body,
            content_type=content_type,
            content_encoding="utf-8",
            headers={"lang": "py", "task": task, "id": f"raw-{abs(hash(body)) % 10**8}", **headers},
            declare=[],
            serializer=None,
        )


def _valid_args() -> list[Any]:
    return ["no-such-flow", "atom", 1, "0123456789ab"]


BAD_MESSAGES = [
    pytest.param(EXECUTE_TASK, json.dumps("hello").encode(), "application/json", id="json-string-body"),
    pytest.param(EXECUTE_TASK, json.dumps([1, 2]).encode(), "application/json", id="json-short-list"),
    pytest.param(REVERT_TASK, json.dumps({"args": 1}).encode(), "application/json", id="json-dict-body"),
    pytest.param(EXECUTE_TASK, b"\x00\x01binary", "application/data", id="application-data"),
    pytest.param(EXECUTE_TASK, b"hello", "application/text", id="application-text"),
    pytest.param(EXECUTE_TASK, b"{not json", "application/json", id="broken-json"),
    pytest.param(
        EXECUTE_TASK,
        json.dumps([_valid_args(), {}, {"chain": [{"task": "os.system", "args": ["id"]}]}]).encode(),
        "application/json",
        id="forged-chain-names-another-task",
    ),
    pytest.param(
        EXECUTE_TASK,
        json.dumps([_valid_args(), {}, {"callbacks": [{"task": "os.system"}]}]).encode(),
        "application/json",
        id="forged-callback",
    ),
]


@pytest.mark.parametrize(("task", "body", "content_type"), BAD_MESSAGES)
def test_a_raw_message_never_stops_the_worker(one_worker: OneWorker, task: str, body: bytes,
                                              content_type: str, tmp_path: Path) -> None:
    before = one_worker.group.output("worker").count("rejected a celeryflow message")
    _publish(one_worker.broker, task, body, content_type)
    # rejected and logged once (not requeued: a requeued message would be logged again and again)
    wait_for(lambda: one_worker.group.output("worker").count("rejected a celeryflow message") > before,
             timeout=30, message=lambda: one_worker.group.dump())
    worker = one_worker.group["worker"]
    assert worker.alive, one_worker.group.dump()
    assert "Unrecoverable error" not in one_worker.group.output("worker")
    # and it goes on serving flows
    from celeryflow import engines

    trace = str(tmp_path / "trace.log")
    flow = linear_flow.Flow("after-raw").add(Step("ok", trace, provides="v"))
    engine = engines.load(flow, app=one_worker.app, backend=one_worker.logbook)
    engine.run(timeout=60)
    assert engine.storage.fetch_all() == {"v": "ok"}
    assert one_worker.group.output("worker").count("rejected a celeryflow message") == before + 1


@pytest.mark.parametrize("codec", ["zlib", "bzip2", "lzma"])
def test_a_compression_bomb_is_refused_before_it_expands(one_worker: OneWorker, codec: str, tmp_path: Path) -> None:
    """A few hundred KB that expand to 256 MB: refused at the bound (16 MiB), the worker goes on."""
    import bz2
    import lzma
    import zlib

    compress = {"zlib": zlib.compress, "bzip2": bz2.compress, "lzma": lzma.compress}[codec]
    bomb = compress(b"[" + b" " * (256 * 1024 * 1024) + b"]")
    assert len(bomb) < 2 * 1024 * 1024
    log = one_worker.group.output("worker")
    before = log.count("MessageTooLarge")
    _publish(one_worker.broker, EXECUTE_TASK, bomb, "application/json", compression={
        "zlib": "application/x-gzip", "bzip2": "application/x-bz2", "lzma": "application/x-lzma"}[codec])
    wait_for(lambda: one_worker.group.output("worker").count("MessageTooLarge") > before,
             timeout=60, message=lambda: one_worker.group.dump())
    assert one_worker.group["worker"].alive, one_worker.group.dump()
    from celeryflow import engines

    flow = linear_flow.Flow("after-bomb").add(Step("ok", str(tmp_path / "trace.log"), provides="v"))
    engine = engines.load(flow, app=one_worker.app, backend=one_worker.logbook)
    engine.run(timeout=60)
    assert engine.storage.fetch_all() == {"v": "ok"}
