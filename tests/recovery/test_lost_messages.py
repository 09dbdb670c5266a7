"""Messages that never reach a worker: the broker loses its queues, the submitter dies."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import redis

from celeryflow import states
from tests.recovery import atoms
from tests.recovery.conftest import RECOVERY, Cluster
from tests.support.procs import REPO_ROOT, wait_for

pytestmark = [pytest.mark.crash, pytest.mark.slow]


def test_flushdb_while_atoms_are_queued(cluster: Cluster) -> None:
    cluster.conductor()
    cluster.worker("w1", concurrency=1)
    trace = cluster.trace()
    flow_id = cluster.submit(atoms.fan, trace=trace, n=8, delay=0.3)
    wait_for(lambda: atoms.counts(trace), timeout=60, message="no atom started")
    client = redis.Redis.from_url(cluster.broker)
    try:
        assert client.llen("celery") > 0, "nothing queued to lose"
        client.flushdb()  # the broker restarts without persistence: every queued message is gone
    finally:
        client.close()
    cluster.wait_state(flow_id, states.SUCCESS, states.FAILURE, states.REVERTED)
    cluster.assert_succeeded_once(flow_id)
    assert set(atoms.counts(trace)) == {f"u{i}" for i in range(8)}
    # the sweep re-sent the lost messages (recorded with its back-off count)
    assert cluster.flow(flow_id).resends > 0


def _submitter(cluster: Cluster, die: str, **kwargs: object) -> str:
    id_file = Path(cluster.tmp) / f"flow-id-{die}"
    proc = cluster.group.start(
        f"submitter-{die}",
        [sys.executable, "-m", "tests.recovery.submitter", "--factory", "chain", "--kwargs", json.dumps(kwargs),
         "--id-file", str(id_file), "--die", die],
        cwd=REPO_ROOT,
    )
    code = proc.wait(60)
    assert code == -9, f"the submitter should have killed itself, exited {code}:\n{proc.tail()}"
    return id_file.read_text().strip()


def test_submitter_killed_right_after_submit(cluster: Cluster) -> None:
    cluster.conductor()
    cluster.worker("w1")
    trace = cluster.trace()
    flow_id = _submitter(cluster, "after-submit", trace=trace, n=4)
    cluster.wait_state(flow_id, states.SUCCESS, states.FAILURE, states.REVERTED)
    cluster.assert_succeeded_once(flow_id)
    assert atoms.counts(trace) == {f"s{i}": 1 for i in range(4)}


def test_submitter_killed_between_commit_and_publish(cluster: Cluster) -> None:
    cluster.worker("w1")
    trace = cluster.trace()
    flow_id = _submitter(cluster, "before-publish", trace=trace, n=4)
    flow = cluster.flow(flow_id)
    assert flow.state == states.RUNNING and cluster.atoms(flow_id)["s0"].queued
    assert atoms.counts(trace) == {}  # nothing was sent
    cluster.conductor()  # the sweep finds the queued atom with no message and sends it
    cluster.wait_state(flow_id, states.SUCCESS, states.FAILURE, states.REVERTED, timeout=RECOVERY)
    cluster.assert_succeeded_once(flow_id)
    assert atoms.counts(trace) == {f"s{i}": 1 for i in range(4)}
