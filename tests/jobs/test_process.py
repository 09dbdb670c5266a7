"""``python -m conductor --board sql`` (the process ``conductor/__main__.py`` runs, with
``conductor.jobs.run_job_conductor``) runs posted jobs on a separate ``celery worker``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from celeryflow import states
from celeryflow.jobs import backends as job_backends
from tests.jobs import flows
from tests.support.procs import ProcessGroup, celery_worker_cmd, conductor_cmd, wait_for

pytestmark = [pytest.mark.slow]


def test_python_m_conductor_runs_posted_jobs(tmp_path: Path, redis_url: str) -> None:
    logbook = f"sqlite:///{tmp_path / 'logbook.db'}"
    env = {"CELERYFLOW_BROKER_URL": redis_url, "CELERYFLOW_BACKEND": logbook, "CELERYFLOW_IMPORTS": "tests.jobs.flows"}
    trace = str(tmp_path / "trace")
    with job_backends.fetch("shop", {"board": "sql", "url": logbook}) as board, \
            ProcessGroup(tmp_path / "procs", env=env) as group:
        jobs = [board.post_flow(flows.three_steps, factory_args=[trace]) for _ in range(2)]
        group.start("worker", celery_worker_cmd(hostname="w@%h", concurrency=2))
        group.wait_for_log("worker", re.escape("ready."), timeout=60)
        group.start("conductor", conductor_cmd("--board", "sql", "--namespace", "shop", "--no-sweep",
                                               "--name", "c1", "--concurrency", "2"))
        wait_for(lambda: board.job_count == 0, timeout=60, message=group.dump)
        persistence = board.persistence
        assert persistence is not None
        for job in jobs:
            assert persistence.get_flow_details(job.flow_uuid or "").state == states.SUCCESS
        assert sorted(line.split()[1] for line in flows.read_trace(trace) if line.startswith("done")) == \
            ["step1", "step1", "step2", "step2", "step3", "step3"]
        assert group.stop("conductor") == 0
        assert "Traceback" not in group.output("conductor")
