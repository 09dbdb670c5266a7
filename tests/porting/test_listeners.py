"""#13 item 1: TaskFlow's listeners, on the embedded default (TaskFlow 6.5's names and messages)."""

from __future__ import annotations

import io
import logging
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from celeryflow import engines, states
from celeryflow.listeners import base, capturing, claims, printing, timing
from celeryflow.listeners import logging as logging_listeners
from tests.porting.atoms import make_hello, make_retrying


@pytest.fixture
def logbook(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'logbook.db'}"


def test_with_listener_registers_and_deregisters(logbook: str) -> None:
    engine = engines.load(make_hello(), backend=logbook)
    assert len(engine.notifier) == 0 and len(engine.atom_notifier) == 0
    listener = capturing.CaptureListener(engine)
    with listener as entered:
        assert entered is listener
        assert len(engine.notifier) == 1 and len(engine.atom_notifier) == 2  # task + retry receivers
        engine.run()
    assert len(engine.notifier) == 0 and len(engine.atom_notifier) == 0
    flow_states = [s for kind, s, _ in listener.values if kind == capturing.CaptureListener.FLOW]
    assert flow_states[-1] == states.SUCCESS
    tasks = [(d["task_name"], s) for kind, s, d in listener.values if kind == capturing.CaptureListener.TASK]
    assert ("tests.porting.atoms.Hi", states.SUCCESS) in tasks
    # TaskFlow's detail keys
    _, _, details = next(v for v in listener.values if v[0] == "task" and v[1] == states.SUCCESS)
    assert details["task_uuid"] == engine.storage.get_atom_uuid(details["task_name"])
    assert details["result"] == "hi"


def test_register_twice_is_a_no_op_and_deregister_is_idempotent(logbook: str) -> None:
    engine = engines.load(make_hello(), backend=logbook)
    listener = base.Listener(engine)
    listener.register()
    listener.register()
    assert len(engine.atom_notifier) == 2
    listener.deregister()
    listener.deregister()
    assert len(engine.atom_notifier) == 0


def test_printing_listener_prints_taskflows_messages(logbook: str) -> None:
    engine = engines.load(make_hello(boom=True), backend=logbook)
    out = io.StringIO()
    with redirect_stdout(out), printing.PrintingListener(engine):
        with pytest.raises(ValueError, match="boom after hi"):
            engine.run()
    text = out.getvalue()
    uuid = r"[0-9a-f-]{36}"
    assert re.search(rf"has moved flow 'hello' \({uuid}\) into state 'RUNNING' from state ", text)
    assert re.search(
        rf"has moved task 'tests.porting.atoms.Hi' \({uuid}\) into state 'SUCCESS' from state 'RUNNING' "
        r"with result 'hi' \(failure=False\)", text)
    assert re.search(
        rf"has moved task 'tests.porting.atoms.Boom' \({uuid}\) into state 'FAILURE' from state 'RUNNING' "
        r"with result '.*boom after hi' \(failure=True\)", text)
    assert "into state 'REVERTED'" in text


def test_printing_listener_to_stderr(logbook: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = engines.load(make_hello(), backend=logbook)
    with printing.PrintingListener(engine, stderr=True):
        engine.run()
    captured = capsys.readouterr()
    assert "has moved flow 'hello'" in captured.err and "has moved" not in captured.out


def test_logging_listeners(logbook: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = engines.load(make_hello(boom=True), backend=logbook)
    log = logging.getLogger("porting.listeners")
    with caplog.at_level(logging.DEBUG, logger="porting.listeners"):
        with logging_listeners.LoggingListener(engine, log=log, level=logging.INFO):
            with logging_listeners.DynamicLoggingListener(engine, log=log):
                with pytest.raises(ValueError):
                    engine.run()
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "porting.listeners"]
    assert any(level == logging.INFO and "has moved task 'tests.porting.atoms.Hi'" in m for level, m in records)
    failed = [m for level, m in records if level == logging.WARNING and "'FAILURE' from state 'RUNNING'" in m]
    assert failed and "boom after hi" in failed[0] and "1 predecessors (most recent first):" in failed[0]
    assert any(level == logging.WARNING and m.startswith("Flow 'hello'") and "'REVERTED'" in m
               for level, m in records)
    assert any(level == logging.DEBUG and "with result 'hi'" in m for level, m in records)


def test_duration_and_event_time_listeners_write_metadata(logbook: str) -> None:
    engine = engines.load(make_hello(), backend=logbook)
    printed: list[str] = []
    with timing.PrintingDurationListener(engine, printer=printed.append), timing.EventTimeListener(engine):
        engine.run()
    storage = engine.storage
    meta = storage.get_atom_metadata("tests.porting.atoms.Hi")
    assert meta["duration"] >= 0
    assert {"RUNNING-timestamp", "SUCCESS-timestamp"} <= set(meta)
    assert storage.flow_meta["duration"] >= 0 and "SUCCESS-timestamp" in storage.flow_meta
    assert "'tests.porting.atoms.Hi' task started." in printed
    assert any(re.fullmatch(r"It took flow 'hello' \d+\.\d\d seconds to finish\.", line) for line in printed)


def test_retry_events_reach_retry_receivers(logbook: str) -> None:
    engine = engines.load(make_retrying(), backend=logbook)
    listener = capturing.CaptureListener(engine, capture_flow=False)
    with listener:
        engine.run()
    retries = [(s, d) for kind, s, d in listener.values if kind == capturing.CaptureListener.RETRY]
    assert retries, listener.values
    assert all(d["retry_name"] == "retrying_retry" and d["retry_uuid"] for _, d in retries)
    assert states.SUCCESS in [s for s, _ in retries]
    task_states = [s for kind, s, _ in listener.values if kind == capturing.CaptureListener.TASK]
    assert task_states.count(states.RUNNING) == 2 and states.FAILURE in task_states
    assert engine.storage.fetch("done") == 2


def test_capture_listener_skips(logbook: str) -> None:
    engine = engines.load(make_hello(), backend=logbook)
    listener = capturing.CaptureListener(engine, skip_tasks=["tests.porting.atoms.Hi"], skip_flows=["hello"])
    with listener:
        engine.run()
    names = {d.get("task_name") for kind, _, d in listener.values}
    assert names == {"tests.porting.atoms.AddOne"}


def test_checking_claim_listener_calls_on_job_loss(logbook: str, tmp_path: Path) -> None:
    from celeryflow.jobs import backends as job_backends

    engine = engines.load(make_hello(), backend=logbook)
    with job_backends.backend("claims", {"board": "sql", "url": f"sqlite:///{tmp_path / 'jobs.db'}"}) as board:
        job = board.post("work")
        with pytest.raises(ValueError, match="callable"):
            claims.CheckingClaimListener(engine, job, board, "me", on_job_loss=42)  # type: ignore[arg-type]
        # never claimed by "me": every event reports the loss
        lost: list[str] = []
        with claims.CheckingClaimListener(engine, job, board, "me",
                                          on_job_loss=lambda eng, state, details: lost.append(state)):
            engine.run()
        assert states.SUCCESS in lost and states.RUNNING in lost
        # claimed by "me": nothing is reported
        board.claim(job, "me")
        kept: list[str] = []
        engine2 = engines.load(make_hello(), backend=logbook)
        with claims.CheckingClaimListener(engine2, job, board, "me", on_job_loss=lambda *a: kept.append("lost")):
            engine2.run()
        assert kept == []
        # the default reaction to a lost claim suspends the engine (events are replayed after the atoms
        # ran, so on the embedded default a two-atom flow may already have finished by then)
        board.abandon(job, "me")
        engine3 = engines.load(make_hello(), backend=logbook)
        with claims.CheckingClaimListener(engine3, job, board, "me"):
            engine3.run()
        assert engine3.storage.get_flow_state() in (states.SUSPENDED, states.SUCCESS)


LISTENERS = [
    ("base", "Listener"), ("printing", "PrintingListener"), ("logging", "LoggingListener"),
    ("logging", "DynamicLoggingListener"), ("timing", "DurationListener"), ("timing", "PrintingDurationListener"),
    ("timing", "EventTimeListener"), ("capturing", "CaptureListener"), ("claims", "CheckingClaimListener"),
]


@pytest.mark.parametrize(("module", "name"), LISTENERS)
def test_signatures_match_the_installed_taskflow(module: str, name: str) -> None:
    import importlib
    import inspect

    pytest.importorskip("taskflow")
    theirs = inspect.signature(getattr(importlib.import_module(f"taskflow.listeners.{module}"), name))
    ours = inspect.signature(getattr(importlib.import_module(f"celeryflow.listeners.{module}"), name))

    def shape(sig: inspect.Signature) -> list[tuple[str, str]]:
        return [(p.name, repr(p.default)) for p in sig.parameters.values()]

    assert shape(ours) == shape(theirs)
