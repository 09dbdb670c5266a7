"""A revert on request (FlowHandle.revert, ``celeryflow flows revert``) waits for running atoms.

Like the failure path: the flow goes REVERTING at once, nothing new starts, the atoms
still executing keep their claim and their results are recorded, and the compensation
starts when nothing runs any more. Driven by hand on every logbook.
"""

from __future__ import annotations

import json

from celeryflow import states
from celeryflow.patterns import unordered_flow
from celeryflow.persistence.tables import utcnow
from celeryflow.runtime import steps
from celeryflow.runtime.logbook import EXECUTE, REVERT, Dispatch
from tests.support.handdrive import LATER, HandFlow, Step, only, reverted_once


def _running_pair(url: str) -> tuple[HandFlow, Dispatch]:
    """a finished, b executing (claimed by w:2), c queued and not started; and the first dispatch."""
    flow = HandFlow(url, unordered_flow.Flow("trio").add(Step("a"), Step("b"), Step("c")))
    first = flow.start()
    flow.deliver(only(first, "a"))
    assert flow.begin("b", "w:2").verdict.value == "run"
    return flow, first


def test_revert_on_request_waits_for_the_running_atom_and_keeps_its_result(db_url: str) -> None:
    flow, _ = _running_pair(db_url)
    started = flow.epoch
    requested = flow.request_revert()
    assert not requested  # nothing is reverted while b may still be executing
    assert flow.state == states.REVERTING
    atoms = flow.atoms()
    assert atoms["b"].state == states.RUNNING and atoms["b"].worker == "w:2"
    assert atoms["a"].state == states.SUCCESS and not atoms["c"].queued
    assert flow.row().outstanding == 1
    # b's execute returns: its result is recorded, then the compensation starts
    after = flow.finish("b", "w:2", started)
    assert after is not None and sorted(after.revert) == ["a", "b"]
    assert json.loads(flow.atoms()["b"].result or "null") == "b"
    flow.deliver(after)
    assert flow.state == states.REVERTED
    assert flow.atom_states() == {"a": states.REVERTED, "b": states.REVERTED, "c": states.PENDING}
    assert reverted_once(flow, {"a", "b"})
    assert flow.claimed[(EXECUTE, "c")] == 0


def test_revert_on_request_of_a_failing_running_atom_compensates_it_once(db_url: str) -> None:
    flow, _ = _running_pair(db_url)
    started = flow.epoch
    assert not flow.request_revert()
    after = flow.finish("b", "w:2", started, fail=True)
    flow.deliver(after)
    assert flow.state == states.REVERTED
    assert reverted_once(flow, {"a", "b"})


def test_revert_on_request_with_a_dead_worker_is_finished_by_the_sweep(db_url: str) -> None:
    flow, _ = _running_pair(db_url)
    assert not flow.request_revert()
    out = flow.reclaim(utcnow() + LATER)  # b's worker died: its heartbeat is stale
    assert out.reset == ["b"] and out.dispatch is not None
    assert sorted(out.dispatch.revert) == ["a", "b"]  # b may have run: it is compensated
    assert flow.atoms()["b"].state == states.FAILURE
    flow.deliver(out.dispatch)
    assert flow.state == states.REVERTED
    assert reverted_once(flow, {"a", "b"})


def test_revert_on_request_while_a_revert_runs_does_not_revert_it_twice(db_url: str) -> None:
    flow, first = _running_pair(db_url)
    flow.finish("b", "w:2", flow.epoch, fail=True)  # the failure path: a and b are reverted...
    assert flow.begin("c", "w:1").verdict is steps.Verdict.REFUSE  # c's message: not started
    planned = steps.refuse(flow.backend, flow.comp, flow.id, "c", first.epoch, "w:1", EXECUTE)
    assert planned is not None and sorted(planned.revert) == ["a", "b"]
    assert flow.begin("b", "w:3", REVERT).verdict.value == "run"  # ...and b's revert is running
    epoch = flow.epoch
    again = flow.request_revert()  # an operator asks again meanwhile
    assert "b" not in again.revert
    assert flow.atoms()["b"].state == states.REVERTING and flow.atoms()["b"].worker == "w:3"
    flow.deliver(again)
    flow.deliver(flow.finish("b", "w:3", epoch, REVERT))
    assert flow.state == states.REVERTED
    assert reverted_once(flow, {"a", "b"})
