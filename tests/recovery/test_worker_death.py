"""Workers die (kill -9) while running an atom; the conductor re-dispatches it."""

from __future__ import annotations

import os
import signal

import pytest

from celeryflow import states
from tests.recovery import atoms
from tests.recovery.conftest import MAX_DELIVERIES, RECOVERY, Cluster, grep
from tests.support.procs import wait_for

pytestmark = [pytest.mark.crash, pytest.mark.slow]


def test_kill_whole_worker_mid_atom(cluster: Cluster) -> None:
    cluster.conductor()
    cluster.worker("w1")
    trace, gate = cluster.trace(), cluster.gate()
    flow_id = cluster.submit(atoms.chain, trace=trace, n=4, hold_at=1, hold=str(gate))
    cluster.wait_running(trace, "s1")
    cluster.group.kill("w1")  # SIGKILL to the worker and its pool: the message stays unacked
    gate.touch()
    cluster.worker("w2")
    cluster.wait_state(flow_id, states.SUCCESS, states.FAILURE, states.REVERTED)
    cluster.assert_succeeded_once(flow_id)
    assert atoms.counts(trace) == {"s0": 1, "s1": 2, "s2": 1, "s3": 1}  # finished atoms not re-run
    lost = [e for e in cluster.events(flow_id) if (e.details or "").find("worker lost") >= 0]
    assert [e.atom_name for e in lost] == ["s1"]
    assert cluster.flow(flow_id).epoch >= 2  # start() + the reclaim


def test_kill_pool_child_mid_atom(cluster: Cluster) -> None:
    cluster.conductor()
    worker = cluster.worker("w1", concurrency=1)
    trace, gate = cluster.trace(), cluster.gate()
    flow_id = cluster.submit(atoms.chain, trace=trace, n=4, hold_at=2, hold=str(gate))
    child = cluster.wait_running(trace, "s2")
    assert child != worker.pid
    gate.touch()
    os.kill(child, signal.SIGKILL)  # only the pool child: the worker lives and forks a new one
    cluster.wait_state(flow_id, states.SUCCESS, states.FAILURE, states.REVERTED)
    cluster.assert_succeeded_once(flow_id)
    counts = atoms.counts(trace)
    assert counts["s0"] == counts["s1"] == counts["s3"] == 1
    assert counts["s2"] in (1, 2)  # the child may die before or after it recorded the execution
    assert worker.alive


def test_poison_atom_is_failed_and_the_flow_reverted(cluster: Cluster) -> None:
    cluster.conductor()
    worker = cluster.worker("w1", concurrency=1)
    trace = cluster.trace()
    flow_id = cluster.submit(atoms.chain, trace=trace, n=4, crash_at=2)
    cluster.wait_state(flow_id, states.REVERTED, states.FAILURE, states.SUCCESS, timeout=RECOVERY * 2)
    assert cluster.flow(flow_id).state == states.REVERTED
    assert atoms.counts(trace)["s2"] == MAX_DELIVERIES  # died N times, then not again
    assert atoms.counts(trace, "revert") == {"s0": 1, "s1": 1, "s2": 1}
    rows = cluster.atoms(flow_id)
    assert rows["s2"].state == states.REVERTED and "WorkerLost" in (rows["s2"].failure or "")
    assert rows["s3"].state == states.PENDING
    assert cluster.transitions(flow_id, states.REVERTED) == {"s0": 1, "s1": 1, "s2": 1}
    assert worker.alive


def test_late_result_of_a_fenced_off_worker_is_discarded(cluster: Cluster) -> None:
    cluster.conductor()
    slow = cluster.worker("w1")
    trace, gate = cluster.trace(), cluster.gate()
    flow_id = cluster.submit(atoms.chain, trace=trace, n=3, hold_at=1, hold=str(gate))
    first = cluster.wait_running(trace, "s1")
    slow.send_signal(signal.SIGSTOP, group=True)  # frozen, not dead: no heartbeats
    try:
        # the sweep reclaims s1 (new epoch); a second worker runs it again, through the gate
        wait_for(lambda: "worker lost" in "".join(e.details or "" for e in cluster.events(flow_id)),
                 timeout=RECOVERY, message="s1 was not reclaimed")
        gate.touch()
        cluster.worker("w2")
        cluster.wait_state(flow_id, states.SUCCESS, states.FAILURE, states.REVERTED)
    finally:
        slow.send_signal(signal.SIGCONT, group=True)
    # the frozen worker wakes up, finishes s1 and tries to record it: refused
    cluster.group.wait_for_log("w1", r"discarding late execute result of \S+/s1", timeout=60)
    cluster.assert_succeeded_once(flow_id)
    assert atoms.counts(trace, "done")["s1"] == 2
    assert first in [pid for what, name, pid in atoms.read_trace(trace) if what == "done" and name == "s1"]
    assert grep(slow, r"fenced off: message epoch")
