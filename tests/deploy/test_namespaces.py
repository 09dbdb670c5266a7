"""#12 item 5: two deployments share one logbook database; each sweeps only its own flows.

Deployment ``alpha`` (Redis db A, a worker that has the atoms) and ``beta`` (Redis db B,
a worker without them) keep their logbooks in one PostgreSQL schema. An alpha flow whose
message was lost is stalled: beta's sweep (a real ``python -m conductor --once``) must
leave it alone (it used to resend it over beta's broker, where it failed NotRegistered),
alpha's sweep re-drives it and alpha's worker finishes it.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
import redis

import celeryflow
from celeryflow.persistence import backends
from celeryflow.persistence.tables import db_now
from celeryflow.sweep import stalled_flows
from tests.deploy.atoms import notes, read_trace
from tests.deploy.conftest import Deployment, deployment, start_worker
from tests.fixtures_db import postgres_database
from tests.support.procs import ProcessGroup, conductor_cmd, wait_for

pytestmark = pytest.mark.services

TIMEOUT = "2"


def sweep_once(group: ProcessGroup, dep: Deployment) -> dict[str, list[str]]:
    env = group.build_env(dep.env)
    out = subprocess.run(conductor_cmd("--once"), env=env, cwd=group.cwd, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    report: dict[str, list[str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def test_a_sweep_redrives_only_its_own_deployments_flows(tmp_path: Path) -> None:
    trace = str(tmp_path / "trace.log")
    settings = {"heartbeat_timeout": TIMEOUT, "heartbeat_interval": "0.5"}
    with postgres_database() as logbook, \
            deployment("alpha", logbook, namespace="alpha", **settings) as alpha, \
            deployment("beta", logbook, namespace="beta", imports="celeryflow_tasks", **settings) as beta, \
            ProcessGroup(tmp_path) as group:
        start_worker(group, beta, "beta-worker")
        # alpha's message is lost before any alpha worker runs (a Redis restart without persistence)
        handle = celeryflow.submit(notes("alpha-flow", trace, "a", "b"), app=alpha.app, backend=logbook)
        redis.Redis.from_url(alpha.env["CELERYFLOW_BROKER_URL"]).flushdb()
        backend = backends.fetch(logbook)

        def stalled() -> bool:
            def look(session: object) -> list[str]:
                cutoff = db_now(session) - dt.timedelta(seconds=float(TIMEOUT))
                return stalled_flows(session, cutoff, 10)  # every deployment's

            return handle.id in backend.run(look, readonly=True)

        wait_for(stalled, timeout=30, message="the alpha flow never looked stalled to a sweep of every flow")
        report = sweep_once(group, beta)
        assert handle.id not in report["resent"] + report["redriven"] + report["reclaimed"], report
        assert report["examined"] == 0, report
        assert handle.state == "RUNNING"
        start_worker(group, alpha, "alpha-worker")
        report = sweep_once(group, alpha)
        assert handle.id in report["resent"] + report["redriven"], report
        handle.wait(timeout=60)
        assert handle.state == "SUCCESS"
        assert [line.split()[:2] for line in read_trace(trace)] == [["execute", "a"], ["execute", "b"]]
        assert "NotRegistered" not in group.output("beta-worker")
        assert "celeryflow" not in group.output("beta-worker").split("[tasks]")[-1].split("ready.")[-1]


def test_flows_carry_their_deployments_namespace(tmp_path: Path) -> None:
    with postgres_database() as logbook, deployment("gamma", logbook, namespace="gamma") as gamma:
        from celeryflow import namespaces

        handle = celeryflow.submit(notes("gamma-flow", str(tmp_path / "t"), "a"), app=gamma.app, backend=logbook)
        assert namespaces.of_flow(backends.fetch(logbook), handle.id) == "gamma"


def test_a_conductor_leaves_another_deployments_jobs_alone(tmp_path: Path) -> None:
    from celeryflow.conductors import backends as conductor_backends
    from celeryflow.jobs import backends as job_backends

    trace = str(tmp_path / "trace.log")
    with postgres_database() as logbook, \
            deployment("alpha", logbook, namespace="alpha") as alpha, \
            deployment("beta", logbook, namespace="beta", imports="celeryflow_tasks") as beta, \
            ProcessGroup(tmp_path) as group, \
            job_backends.fetch("shared", {"board": "sql", "url": logbook}) as board:
        job = board.post_flow(notes, factory_args=["alpha-job", trace, "a"], backend=logbook, app=alpha.app)
        theirs = conductor_backends.fetch("blocking", "beta-conductor", board, app=beta.app, wait_timeout=0.05)
        assert theirs.run(max_dispatches=1) == 1
        assert board.find_owner(job) is None and job.uuid in [j.uuid for j in board.iterjobs()]
        assert read_trace(trace) == []
        start_worker(group, alpha, "alpha-worker")
        ours = conductor_backends.fetch("blocking", "alpha-conductor", board, app=alpha.app, wait_timeout=0.05)
        assert ours.run(max_dispatches=1) == 1
        assert [line.split()[:2] for line in read_trace(trace)] == [["execute", "a"]]
        assert board.job_count == 0
