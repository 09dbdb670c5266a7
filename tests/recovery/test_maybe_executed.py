"""An atom that was claimed for execute may have run: if its flow reverts, it is reverted exactly once.

The reset that puts a claimed atom back to PENDING (the sweep reclaiming it from a
dead worker, or a resume re-driving it) does not make its side effects go away:
when another atom fails before it ran again, the compensation reverts it too.
Driven by hand on every logbook; one scenario with real processes killed by SIGKILL.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from celeryflow import retry, states
from celeryflow.patterns import linear_flow, unordered_flow
from celeryflow.persistence.tables import utcnow
from celeryflow.runtime.logbook import EXECUTE
from tests.recovery import atoms, held_atoms
from tests.recovery.conftest import RECOVERY, Cluster
from tests.support.handdrive import LATER, HandFlow, Step, only, reverted_once
from tests.support.procs import wait_for


def _pair() -> unordered_flow.Flow:
    return unordered_flow.Flow("pair").add(Step("a"), Step("b"))


@pytest.mark.parametrize("reset_by", ["sweep", "resume"])
def test_a_claimed_then_reset_atom_is_reverted_when_another_fails(db_url: str, reset_by: str) -> None:
    flow = HandFlow(db_url, _pair())
    flow.start()
    assert flow.begin("a", "dead:1").verdict.value == "run"  # its worker dies mid-execute
    if reset_by == "sweep":
        out = flow.reclaim(utcnow() + LATER)
        assert out.reset == ["a"] and out.dispatch is not None
        again = out.dispatch
    else:
        flow.age_heartbeat("a")
        again = flow.start()
    atoms = flow.atoms()
    assert atoms["a"].state == states.PENDING and atoms["a"].queued
    # b fails before a runs again: a's message is then refused (the flow is compensating)
    flow.deliver(only(again, "b"), fail=frozenset({"b"}))
    assert flow.state == states.REVERTING
    flow.deliver(only(again, "a"))
    assert flow.state == states.REVERTED
    assert flow.atom_states() == {"a": states.REVERTED, "b": states.REVERTED}
    assert reverted_once(flow, {"a", "b"})


def test_an_atom_that_never_was_claimed_is_not_reverted(db_url: str) -> None:
    flow = HandFlow(db_url, _pair())
    first = flow.start()
    # b fails before a's message arrives: a never ran, it stays PENDING
    flow.deliver(only(first, "b"), fail=frozenset({"b"}))
    flow.deliver(only(first, "a"))
    assert flow.state == states.REVERTED
    assert flow.atom_states() == {"a": states.PENDING, "b": states.REVERTED}
    assert reverted_once(flow, {"b"})


def test_a_claimed_then_reset_atom_is_reverted_with_its_retry_scope(db_url: str) -> None:
    scoped = unordered_flow.Flow("scoped", retry=retry.Times(2, name="r")).add(Step("a"), Step("b"))
    flow = HandFlow(db_url, linear_flow.Flow("outer").add(scoped))
    assert flow.start().execute == ["r"]
    flow.begin("r", "w:1")
    after_r = flow.finish("r", "w:1", flow.epoch)  # the controller ran: a and b are queued
    assert after_r is not None and sorted(after_r.execute) == ["a", "b"]
    assert flow.begin("a", "dead:1").verdict.value == "run"
    out = flow.reclaim(utcnow() + LATER)
    assert out.reset == ["a"] and out.dispatch is not None
    # b fails: r decides RETRY; its scope is reverted (a too: it may have run), then run again
    flow.deliver(only(out.dispatch, "b"), fail=frozenset({"b"}))
    flow.deliver(only(out.dispatch, "a"))
    assert flow.state == states.SUCCESS
    assert flow.transitions(states.REVERTED) == Counter({"a": 1, "b": 1})
    assert flow.claimed[(EXECUTE, "a")] == 2 and flow.claimed[(EXECUTE, "b")] == 2


@pytest.mark.crash
@pytest.mark.slow
def test_worker_killed_mid_execute_then_a_sibling_fails_the_killed_atom_is_reverted(cluster: Cluster) -> None:
    imports = f"{cluster.env['CELERYFLOW_IMPORTS']},tests.recovery.held_atoms"
    cluster.group.env["CELERYFLOW_IMPORTS"] = imports
    cluster.conductor()
    workers = {"w1": cluster.worker("w1", concurrency=1), "w2": cluster.worker("w2", concurrency=1)}
    trace, gate_a, gate_b = cluster.trace(), cluster.gate(), cluster.gate()
    flow_id = cluster.submit(held_atoms.held_pair, trace=trace, hold_a=str(gate_a), hold_b=str(gate_b))
    child = cluster.wait_running(trace, "a")
    cluster.wait_running(trace, "b")
    parent = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
    killed = next(name for name, proc in workers.items() if proc.pid == parent)
    cluster.group.kill(killed)  # a's worker dies mid-execute; the other one is busy with b
    # the sweep reclaims a (PENDING, queued again); nobody is free to run it before b fails
    wait_for(lambda: cluster.atoms(flow_id)["a"].state == states.PENDING, timeout=RECOVERY, interval=0.1,
             message=lambda: f"a was not reclaimed\n{cluster.group.dump()}")
    gate_b.touch()
    assert cluster.wait_state(flow_id, states.REVERTED, states.FAILURE, states.SUCCESS) == states.REVERTED
    assert atoms.counts(trace) == {"a": 1, "b": 1}
    assert atoms.counts(trace, "revert") == {"a": 1, "b": 1}
    assert cluster.transitions(flow_id, states.REVERTED) == {"a": 1, "b": 1}
