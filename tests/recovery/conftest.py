"""Fixtures of the fault-injection suite: a small cluster of real processes.

``cluster`` gives each test its own Redis db (broker) and PostgreSQL schema
(logbook), an environment with short timeouts for the processes it starts
(``celery -A celeryflow_tasks worker``, ``python -m conductor``), and an app in
the test process to submit flows with. Every process is stopped at the end of
the test (``process_group``), whatever happens.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from celeryflow import states
from celeryflow.persistence import backends
from celeryflow.persistence.backends.base import Backend
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow
from tests.support.procs import ManagedProcess, ProcessGroup, celery_worker_cmd, conductor_cmd, wait_for

HEARTBEAT_TIMEOUT = 3.0
HEARTBEAT_INTERVAL = 0.3
SWEEP_INTERVAL = 0.5
MAX_DELIVERIES = 3
#: generous deadline for a recovery: timeout + sweeps + worker start-up on a loaded CI machine
RECOVERY = 90.0


@dataclass
class Cluster:
    group: ProcessGroup
    broker: str
    logbook: str
    tmp: Path
    app: Any = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def backend(self) -> Backend:
        return backends.fetch(self.logbook)

    # -- processes -------------------------------------------------------------------------
    def worker(self, name: str, concurrency: int = 1, wait: bool = True, **env: str) -> ManagedProcess:
        proc = self.group.start(
            name, celery_worker_cmd(hostname=f"{name}-{uuid.uuid4().hex[:6]}@%h", concurrency=concurrency),
            env=env or None,
        )
        if wait:
            self.group.wait_for_log(name, r"ready\.", timeout=60)
        return proc

    def conductor(self, name: str = "conductor", wait: bool = True, *args: str) -> ManagedProcess:
        proc = self.group.start(name, conductor_cmd("--name", name, *args))
        if wait:
            self.group.wait_for_log(name, r"conductor \S+ ready", timeout=60)
        return proc

    # -- flows -------------------------------------------------------------------------------
    def trace(self) -> str:
        return str(self.tmp / f"trace-{uuid.uuid4().hex[:8]}.log")

    def gate(self) -> Path:
        return self.tmp / f"gate-{uuid.uuid4().hex[:8]}"

    def submit(self, factory: Callable[..., Any], **kwargs: Any) -> str:
        from celeryflow.handle import submit

        handle = submit(factory, app=self.app, backend=self.logbook, factory_kwargs=kwargs)
        return handle.id

    def flow(self, flow_id: str) -> FlowRow:
        def read(session: Any) -> FlowRow:
            row = session.get(FlowRow, flow_id)
            assert row is not None, f"flow {flow_id} not in the logbook"
            session.expunge(row)
            return row

        return self.backend.run(read, readonly=True)

    def atoms(self, flow_id: str) -> dict[str, AtomRow]:
        def read(session: Any) -> dict[str, AtomRow]:
            rows = session.scalars(select(AtomRow).where(AtomRow.flow_uuid == flow_id)).all()
            for r in rows:
                session.expunge(r)
            return {r.name: r for r in rows}

        return self.backend.run(read, readonly=True)

    def events(self, flow_id: str) -> list[EventRow]:
        def read(session: Any) -> list[EventRow]:
            rows = session.scalars(select(EventRow).where(EventRow.flow_uuid == flow_id).order_by(EventRow.id)).all()
            for r in rows:
                session.expunge(r)
            return list(rows)

        return self.backend.run(read, readonly=True)

    def wait_state(self, flow_id: str, *wanted: str, timeout: float = RECOVERY) -> str:
        wanted = wanted or tuple(states.FLOW_TERMINAL)

        def done() -> str | None:
            state = self.flow(flow_id).state
            return state if state in wanted else None

        return wait_for(done, timeout=timeout, interval=0.1,
                        message=lambda: f"flow {flow_id} is {self.flow(flow_id).state}, not {wanted}\n"
                                        f"{self.group.dump()}")

    def wait_running(self, trace: str, atom: str, timeout: float = 60.0) -> int:
        """Wait until ``atom`` started executing; return the pid running it."""
        from tests.recovery.atoms import read_trace

        def started() -> int | None:
            pids = [pid for what, name, pid in read_trace(trace) if what == "execute" and name == atom]
            return pids[-1] if pids else None

        return wait_for(started, timeout=timeout, interval=0.05,
                        message=lambda: f"atom {atom} never started\n{self.group.dump()}")

    # -- checks ------------------------------------------------------------------------------
    def transitions(self, flow_id: str, new_state: str) -> dict[str, int]:
        """How many times each atom moved to ``new_state`` (per the event log)."""
        out: dict[str, int] = {}
        for ev in self.events(flow_id):
            if ev.kind == "atom" and ev.new_state == new_state and ev.old_state != new_state:
                out[ev.atom_name or ""] = out.get(ev.atom_name or "", 0) + 1
        return out

    def assert_succeeded_once(self, flow_id: str) -> None:
        """The flow is SUCCESS, every atom SUCCESS, each recorded SUCCESS exactly once."""
        assert self.flow(flow_id).state == states.SUCCESS
        atoms = self.atoms(flow_id)
        assert {r.state for r in atoms.values()} == {states.SUCCESS}, {n: r.state for n, r in atoms.items()}
        assert self.transitions(flow_id, states.SUCCESS) == dict.fromkeys(atoms, 1)
        flow_ends = [e for e in self.events(flow_id) if e.kind == "flow" and e.new_state == states.SUCCESS]
        assert len(flow_ends) == 1


def _test_app(broker: str, logbook: str) -> Any:
    from celery import Celery

    install_module: Any = sys.modules["celeryflow.install"]
    previous = install_module._installed
    app = Celery("recovery-tests", set_as_current=False)
    app.conf.broker_url = broker
    app.conf.broker_connection_retry_on_startup = True
    app.conf.task_ignore_result = True
    try:
        install_module.install(
            app, backend=logbook, beat=False, heartbeat_timeout=HEARTBEAT_TIMEOUT,
            heartbeat_interval=HEARTBEAT_INTERVAL, sweep_interval=SWEEP_INTERVAL, max_deliveries=MAX_DELIVERIES,
        )
    finally:
        install_module._installed = previous
    return app


@pytest.fixture
def cluster(redis_url: str, postgres_url: str, process_group: ProcessGroup, tmp_path: Path) -> Iterator[Cluster]:
    import celeryflow.install  # noqa: F401  (loads the module under its sys.modules name)

    env = {
        "CELERYFLOW_BROKER_URL": redis_url,
        "CELERYFLOW_BACKEND": postgres_url,
        "CELERYFLOW_IMPORTS": "tests.recovery.atoms",
        "CELERYFLOW_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "CELERYFLOW_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
        "CELERYFLOW_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
        "CELERYFLOW_MAX_DELIVERIES": str(MAX_DELIVERIES),
        "CELERYFLOW_RESULT_BACKEND": "",
    }
    process_group.env.update(env)
    backends.fetch(postgres_url).upgrade()  # create the schema once, before processes race for it
    cluster = Cluster(process_group, redis_url, postgres_url, tmp_path, _test_app(redis_url, postgres_url), env)
    yield cluster
    cluster.app.close()


def grep(proc: ManagedProcess, pattern: str) -> list[str]:
    return re.findall(pattern, proc.output())
