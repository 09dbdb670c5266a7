"""``celeryflow db``, ``top``, ``worker`` and ``conductor``."""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path

from celeryflow import engines, states
from celeryflow.persistence import migrate
from tests.cli.conftest import Populated, invoke
from tests.contrib.atoms import nap_flow, order_flow, order_store
from tests.support.procs import ProcessGroup, wait_for


def test_db_upgrade_and_current(logbook_url: str) -> None:
    before = invoke("db", "current", "-b", logbook_url)
    assert before.exit_code == 1 and "no schema yet" in before.stdout
    first = invoke("db", "upgrade", "-b", logbook_url)
    assert first.exit_code == 0, first.output
    assert f"schema upgraded (empty) -> {migrate.head()}" in first.stdout
    again = invoke("db", "upgrade", "--backend", logbook_url)
    assert again.exit_code == 0 and f"schema already at {migrate.head()}" in again.stdout
    current = invoke("db", "current", env={"CELERYFLOW_BACKEND": logbook_url})
    assert current.exit_code == 0 and "up to date" in current.stdout
    assert "password" not in current.stdout.lower()


def test_db_upgrade_unreachable_exits_3() -> None:
    result = invoke("db", "upgrade", "-b", "postgresql://celeryflow:hunter2@127.0.0.1:1/x")
    assert result.exit_code == 3, result.output
    assert "hunter2" not in result.output  # passwords are masked in messages


def test_top_once_shows_flows_and_workers(populated: Populated) -> None:
    engine = engines.load_from_factory(nap_flow, factory_kwargs={"count": 2}, store={"seconds": 1.5},
                                       backend=populated.url)
    engine.prepare()  # before the thread: engine.storage would persist it too (a race)
    runner = threading.Thread(target=engine.run, kwargs={"timeout": 30})
    runner.start()
    try:
        wait_for(lambda: engine.storage.get_atom_state("nap_0") == states.RUNNING, timeout=10)
        result = invoke("top", "--once", "-b", populated.url)
    finally:
        runner.join(30)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "active flows (1)" in out
    assert engine.flow_uuid[:8] in out and "naps" in out and "nap_0" in out
    assert "workers seen" in out and re.search(r"naps / nap_0", out)  # a worker runs it right now
    assert "recently finished" in out and "place-order" in out and "REVERTED" in out


def test_worker_and_conductor_dry_run() -> None:
    env = {"CELERYFLOW_BROKER_URL": "redis://127.0.0.1:6379/9", "CELERYFLOW_BACKEND": "sqlite:////tmp/x.db"}
    result = invoke("worker", "--dry-run", "-c", "3", "--imports", "myapp.flows", "-n", "w1@%h", "--",
                    "--max-tasks-per-child", "100", env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "CELERYFLOW_BROKER_URL=redis://127.0.0.1:6379/9" in lines
    assert "CELERYFLOW_IMPORTS=myapp.flows" in lines
    command = lines[-1]
    assert f"{sys.executable} -m celery -A celeryflow_tasks worker" in command
    assert "-E" in command.split() and "--concurrency 3" in command and "--max-tasks-per-child 100" in command
    conductor = invoke("conductor", "--dry-run", "--sweep-interval", "5", env=env)
    assert conductor.stdout.splitlines()[-1] == f"{sys.executable} -m conductor"
    assert "CELERYFLOW_SWEEP_INTERVAL=5.0" in conductor.stdout
    beat = invoke("conductor", "--dry-run", "--beat", env=env)
    assert "-m celery -A conductor beat" in beat.stdout


def test_celeryflow_worker_runs_flows_and_resume_sends_to_it(
    redis_url: str, postgres_url: str, process_group: ProcessGroup, tmp_path: Path
) -> None:
    """`celeryflow worker` is a real Celery worker; `flows resume` on a broker returns at once."""
    env = {"CELERYFLOW_BROKER_URL": redis_url, "CELERYFLOW_BACKEND": postgres_url}
    process_group.start("worker", [sys.executable, "-m", "celeryflow", "worker", "--imports", "tests.contrib.atoms",
                                   "-c", "2", "-n", "cli-test@%h", "--", "--without-gossip", "--without-mingle"],
                        env=env)
    process_group.wait_for_log("worker", r"ready\.", timeout=60)

    engine = engines.load_from_factory(order_flow, store=order_store("W-1"), backend=postgres_url)
    engine.prepare()  # persisted, never sent
    result = invoke("flows", "resume", engine.flow_uuid, "--wait", "--timeout", "30", env=env)
    assert result.exit_code == 0, result.output + process_group.dump()
    assert f"flow {engine.flow_uuid}: SUCCESS" in result.stdout
    doc = json.loads(invoke("flows", "show", engine.flow_uuid, "--json", env=env).stdout)
    assert {a["worker"].split(":")[0] for a in doc["atoms"]}  # recorded by the worker process
    assert "celeryflow: place-order / notify" in process_group.output("worker")

    top = invoke("top", "--once", "--inspect", env=env)
    assert top.exit_code == 0 and "Celery workers (inspect)" in top.stdout and "cli-test@" in top.stdout


def test_unreachable_broker_exits_3(sqlite_url: str) -> None:
    engine = engines.load_from_factory(nap_flow, store={"seconds": 0}, backend=sqlite_url)
    engine.prepare()
    result = invoke("flows", "resume", engine.flow_uuid,
                    env={"CELERYFLOW_BROKER_URL": "redis://127.0.0.1:1/0", "CELERYFLOW_BACKEND": sqlite_url})
    assert result.exit_code == 3, result.output
    assert "unreachable" in result.stderr
    assert engine.storage.get_flow_state() == states.PENDING  # nothing half-done


def test_celeryflow_conductor_execs_the_conductor(redis_url: str, sqlite_url: str) -> None:
    import os
    import subprocess

    env = {**os.environ, "CELERYFLOW_BROKER_URL": redis_url, "CELERYFLOW_BACKEND": sqlite_url}
    result = subprocess.run([sys.executable, "-m", "celeryflow", "conductor", "--heartbeat-timeout", "5", "--once"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == [] and "examined" in report
