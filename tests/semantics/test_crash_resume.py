"""The process that started a flow is SIGKILLed mid-atom; another process picks the flow up.

Embedded default (the caller *is* the worker): the flow is left RUNNING in an SQLite
file logbook; ``engines.load_from_detail(flow_id, backend=url, store=...)`` and
``run()`` in a new process re-run only the atom that was running (new store values
apply), never the finished ones, once the dead caller's claim on it is stale (resume
leaves claims with a fresh heartbeat alone: their worker may be alive). The flow was
built by a registered factory, so the new process rebuilds it from the logbook alone.

Separate workers: killing the caller loses nothing; the flow finishes on the
workers and a new process re-attaches to it by id.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from sqlalchemy import select

from celeryflow import engines, states
from celeryflow.handle import FlowHandle
from celeryflow.persistence import backends
from celeryflow.persistence.tables import AtomRow, db_now
from celeryflow.runtime.control import claim_is_fresh
from celeryflow.runtime.embedded import embedded_app
from tests.semantics.atoms import StepError, calls, read_trace
from tests.support.procs import ProcessGroup, wait_for

pytestmark = pytest.mark.crash


def _start_caller(group: ProcessGroup, kind: str, factory: str, trace: str, url: str, id_file: Path,
                  hang: float, env: Mapping[str, str | None] | None = None) -> object:
    argv = [sys.executable, "-m", "tests.semantics.crash_driver", kind, factory, trace, url, str(id_file), str(hang)]
    return group.start("caller", argv, env=env)


def _kill_when(group: ProcessGroup, trace: str, what: tuple[str, str], id_file: Path) -> str:
    proc = group.procs["caller"]
    wait_for(lambda: what in calls(trace), timeout=60,
             message=lambda: f"the caller never reached {what}:\n{proc.tail()}")
    proc.kill()
    return id_file.read_text().strip()


#: the resuming process's heartbeat timeout: a claim of the killed caller is stale after this
RESUME_TIMEOUT = 1.0


def _until_claim_is_stale(url: str, flow_id: str, atom: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resume re-drives only stale claims: wait until the killed caller's claim on ``atom`` is stale."""
    monkeypatch.setenv("CELERYFLOW_HEARTBEAT_TIMEOUT", str(RESUME_TIMEOUT))
    # the embedded app's own setting wins over the environment: pin it for this test too, so
    # nothing an earlier test left on the process-wide app changes what "stale" means here
    monkeypatch.setitem(embedded_app().conf, "celeryflow_heartbeat_timeout", RESUME_TIMEOUT)
    backend = backends.fetch(url)
    beat = backend.run(lambda s: s.scalar(
        select(AtomRow.heartbeat_at).where(AtomRow.flow_uuid == flow_id, AtomRow.name == atom)))
    # the database's clock: the one heartbeats are written with
    wait_for(lambda: not claim_is_fresh(beat, RESUME_TIMEOUT, backend.run(db_now)), timeout=30, interval=0.05)


def test_embedded_caller_killed_mid_atom_then_resumed(tmp_path, process_group, monkeypatch):
    trace = str(tmp_path / "trace.log")
    url = f"sqlite:///{tmp_path / 'logbook.db'}"
    id_file = tmp_path / "flow_id"
    embedded_only = {"CELERYFLOW_BROKER_URL": None, "CELERYFLOW_BACKEND": None, "CELERYFLOW_IMPORTS": None}
    _start_caller(process_group, "embedded", "hanging_chain", trace, url, id_file, 60, embedded_only)
    flow_id = _kill_when(process_group, trace, ("execute", "slow"), id_file)
    killed_pid = read_trace(trace)[-1]["pid"]
    _until_claim_is_stale(url, flow_id, "slow", monkeypatch)

    engine = engines.load_from_detail(flow_id, backend=url, store={"hang": False}, app=embedded_app())
    st = engine.storage
    assert st.get_flow_state() == states.RUNNING
    assert [st.get_atom_state(n) for n in ("a", "b", "slow", "c")] == [
        states.SUCCESS, states.SUCCESS, states.RUNNING, states.PENDING,
    ]
    engine.run(timeout=60)
    assert calls(trace) == [("execute", "a"), ("execute", "b"), ("execute", "slow"), ("execute", "slow"),
                            ("execute", "c")]
    slow = [e for e in read_trace(trace) if e["name"] == "slow"]
    assert slow[0]["pid"] == killed_pid and slow[1]["pid"] != killed_pid
    assert slow[1]["args"] == {"hang": False}  # the new store value applies
    assert st.get_flow_state() == states.SUCCESS
    assert engine.storage.fetch_all() == {"hang": False, "a": "a", "b": "b", "slow": "slow", "c": "c"}


def test_embedded_caller_killed_mid_revert_then_resumed(tmp_path, process_group, monkeypatch):
    trace = str(tmp_path / "trace.log")
    url = f"sqlite:///{tmp_path / 'logbook.db'}"
    id_file = tmp_path / "flow_id"
    embedded_only = {"CELERYFLOW_BROKER_URL": None, "CELERYFLOW_BACKEND": None, "CELERYFLOW_IMPORTS": None}
    _start_caller(process_group, "embedded", "reverting_chain", trace, url, id_file, 60, embedded_only)
    flow_id = _kill_when(process_group, trace, ("revert", "b"), id_file)
    _until_claim_is_stale(url, flow_id, "b", monkeypatch)

    engine = engines.load_from_detail(flow_id, backend=url, store={"hang": False}, app=embedded_app())
    assert engine.storage.get_flow_state() == states.REVERTING
    assert engine.storage.get_atom_state("b") == states.REVERTING
    with pytest.raises(StepError, match="c failed"):
        engine.run(timeout=60)
    # b's revert runs again from the start; a is reverted after it; c's revert is not repeated
    assert calls(trace) == [
        ("execute", "a"), ("execute", "b"), ("execute", "c"),
        ("revert", "c"), ("revert", "b"), ("revert", "b"), ("revert", "a"),
    ]
    assert engine.storage.get_flow_state() == states.REVERTED


def test_remote_caller_killed_the_flow_finishes_and_is_reattached(remote_env, tmp_path, process_group):
    trace = str(tmp_path / "trace.log")
    id_file = tmp_path / "flow_id"
    _start_caller(process_group, "remote", "hanging_chain", trace, remote_env.backend, id_file, 2.0, remote_env.env)
    flow_id = _kill_when(process_group, trace, ("execute", "slow"), id_file)
    handle = FlowHandle(flow_id, app=remote_env.app, backend=remote_env.backend)
    results = handle.wait(timeout=60)
    assert results == {"hang": True, "a": "a", "b": "b", "slow": "slow", "c": "c"}
    assert calls(trace) == [("execute", n) for n in ("a", "b", "slow", "c")]  # nothing ran twice
    assert handle.state == states.SUCCESS
