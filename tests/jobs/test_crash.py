"""A conductor process killed with SIGKILL mid-job: a second conductor claims the job once the
claim expires, and the flow completes with each finished atom executed once.

(a) all-embedded: conductors run the atoms in-process, board and logbook in one SQLite file; the
    killed conductor's running atom dies with it and the second conductor re-runs it.
(b) production shape: two ``celery worker`` processes on Redis, the logbook in PostgreSQL, the
    Redis jobboard; the atom keeps running on its worker while its conductor is dead.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from celeryflow import states
from celeryflow.jobs import backends as job_backends
from celeryflow.persistence import backends as persistence_backends
from tests.jobs import flows
from tests.support.procs import ProcessGroup, celery_worker_cmd, wait_for

pytestmark = [pytest.mark.crash, pytest.mark.slow]

EXPIRY = 2.0
#: embedded conductors' heartbeats: the second conductor's resume re-runs the killed one's atom only
#: once its claim is stale (a fresh claim is left alone), and the claim expiry (>= EXPIRY * 2/3
#: after the kill) comes later than that
HEARTBEATS = {"CELERYFLOW_HEARTBEAT_TIMEOUT": "1.0", "CELERYFLOW_HEARTBEAT_INTERVAL": "0.3"}


def conductor_cmd(board: str, name: str, *extra: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "tests.jobs.conductor_proc", "--board", board, "--name", name,
            "--claim-expiry", str(EXPIRY), *extra]


def started(trace: str, atom: str) -> list[str]:
    return [line for line in flows.read_trace(trace) if line.startswith(f"start {atom} ")]


def finished(trace: str) -> list[str]:
    return [line.split()[1] for line in flows.read_trace(trace) if line.startswith("done ")]


def test_killed_embedded_conductor_is_taken_over_after_expiry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    trace, gate = str(tmp_path / "trace"), str(tmp_path / "gate")
    with job_backends.fetch("celeryflow", {"board": "sql", "url": url}) as board, \
            ProcessGroup(tmp_path / "procs") as group:
        job = board.post_flow(flows.three_steps, factory_args=[trace], factory_kwargs={"gate": gate})
        group.start("first", conductor_cmd(url, "first", "--embedded"), env=HEARTBEATS)
        wait_for(lambda: started(trace, "step2"), timeout=60, message=lambda: group.dump())
        assert board.find_owner(job) == "first"
        group.kill("first")
        killed = time.monotonic()
        Path(gate).touch()  # the next run of step2 goes through
        group.start("second", conductor_cmd(url, "second", "--embedded"), env=HEARTBEATS)
        wait_for(lambda: board.find_owner(job) == "second" or job.state == states.COMPLETE, timeout=60,
                 interval=0.02, message=lambda: group.dump())
        takeover = time.monotonic() - killed
        group.wait_for_log("second", f"EVENT job_consumed {job.uuid} SUCCESS", timeout=60)
        recovered = time.monotonic() - killed
        assert board.job_count == 0
        fd = persistence_backends.fetch(url).get_flow_details(job.flow_uuid or "")
        assert fd.state == states.SUCCESS
        assert finished(trace) == ["step1", "step2", "step3"]  # each finished atom executed once
        first_pid, second_pid = (line.split()[2] for line in started(trace, "step2"))
        assert first_pid != second_pid  # step2 died with the first conductor and ran again in the second
        # the claim was last extended at most expiry/3 before the kill; it lapses expiry after that
        assert EXPIRY * 2 / 3 - 0.2 <= takeover < EXPIRY + 5
        print(f"\nembedded: claim taken over {takeover:.2f}s after SIGKILL (expiry {EXPIRY}s), "
              f"job done {recovered:.2f}s after")


@pytest.mark.services
def test_killed_conductor_with_separate_workers_redis_board_postgres_logbook(
    tmp_path: Path, redis_url: str, redis_prefix: str, postgres_url: str
) -> None:
    trace, gate = str(tmp_path / "trace"), str(tmp_path / "gate")
    env = {"CELERYFLOW_BROKER_URL": redis_url, "CELERYFLOW_BACKEND": postgres_url,
           "CELERYFLOW_IMPORTS": "tests.jobs.flows"}
    conf = {"board": "redis", "url": redis_url, "namespace": f"{redis_prefix}jobs", "claim_expiry": EXPIRY}
    with job_backends.fetch("celeryflow", conf, persistence=postgres_url) as board, \
            ProcessGroup(tmp_path / "procs", env=env) as group:
        for name in ("worker1", "worker2"):
            group.start(name, celery_worker_cmd(hostname=f"{name}@%h", concurrency=2))
        for name in ("worker1", "worker2"):
            group.wait_for_log(name, re.escape("ready."), timeout=60)
        job = board.post_flow(flows.three_steps, factory_args=[trace], factory_kwargs={"gate": gate})
        extra = ("--namespace", f"{redis_prefix}jobs", "--persistence", postgres_url)
        group.start("first", conductor_cmd(redis_url, "first", *extra))
        wait_for(lambda: started(trace, "step2"), timeout=60, message=lambda: group.dump())
        group.kill("first")
        killed = time.monotonic()
        # the atom lives on its worker: it finishes, and the workers carry the flow to its end
        Path(gate).touch()
        group.start("second", conductor_cmd(redis_url, "second", *extra))
        group.wait_for_log("second", f"EVENT job_consumed {job.uuid} SUCCESS", timeout=60)
        recovered = time.monotonic() - killed
        assert recovered >= EXPIRY * 2 / 3 - 0.2  # the dead conductor's claim had to lapse first
        assert board.job_count == 0
        fd = persistence_backends.fetch(postgres_url).get_flow_details(job.flow_uuid or "")
        assert fd.state == states.SUCCESS
        assert finished(trace) == ["step1", "step2", "step3"]
        assert len(started(trace, "step2")) == 1
        print(f"\nworkers: job settled by the second conductor {recovered:.2f}s after SIGKILL")
