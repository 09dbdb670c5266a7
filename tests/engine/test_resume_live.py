"""Resume (FlowHandle.resume, ``flows resume``, ``load_from_detail().run()``, a conductor
re-claiming a job: all ``control.start``) on a live flow re-drives only what is stale or
not started: an atom whose worker's heartbeat is fresh keeps its claim, is not run (or
reverted) a second time, and its result is recorded. Driven by hand on every logbook.
"""

from __future__ import annotations

from celeryflow import states
from celeryflow.patterns import unordered_flow
from celeryflow.runtime import steps
from celeryflow.runtime.logbook import EXECUTE, REVERT
from tests.support.handdrive import HandFlow, Step, only, reverted_once


def _trio(url: str) -> HandFlow:
    return HandFlow(url, unordered_flow.Flow("trio").add(Step("a"), Step("b"), Step("c")))


def test_resume_keeps_a_running_atom_with_a_fresh_heartbeat(db_url: str) -> None:
    flow = _trio(db_url)
    first = flow.start()
    assert flow.begin("a", "w:1").verdict is steps.Verdict.RUN  # its worker is alive
    again = flow.start()
    assert sorted(again.execute) == ["b", "c"]  # not a: it is running
    atoms = flow.atoms()
    assert atoms["a"].state == states.RUNNING and atoms["a"].worker == "w:1"
    assert flow.row().outstanding == 3
    assert flow.finish("a", "w:1", first.epoch) is not None  # its result counts
    flow.deliver(again)
    assert flow.state == states.SUCCESS
    assert flow.claimed[(EXECUTE, "a")] == 1


def test_resume_runs_again_an_atom_whose_worker_is_gone(db_url: str) -> None:
    flow = _trio(db_url)
    first = flow.start()
    assert flow.begin("a", "dead:1").verdict is steps.Verdict.RUN
    flow.age_heartbeat("a")
    again = flow.start()
    assert sorted(again.execute) == ["a", "b", "c"]
    assert flow.finish("a", "dead:1", first.epoch) is None  # the lost worker's late result is discarded
    flow.deliver(again)
    assert flow.state == states.SUCCESS
    assert flow.claimed[(EXECUTE, "a")] == 2


def test_resume_while_the_failure_path_waits_does_not_revert_a_running_atom(db_url: str) -> None:
    flow = _trio(db_url)
    first = flow.start()
    assert flow.begin("a", "w:1").verdict is steps.Verdict.RUN
    flow.deliver(only(first, "b", "c"), fail=frozenset({"b"}))  # b fails; the flow waits for a
    assert flow.state == states.REVERTING
    again = flow.start()
    assert not again  # a may still be executing: nothing is reverted yet
    assert flow.atoms()["a"].state == states.RUNNING
    after = flow.finish("a", "w:1", first.epoch)
    assert after is not None and sorted(after.revert) == ["a", "b"]
    flow.deliver(after)
    assert flow.state == states.REVERTED
    assert reverted_once(flow, {"a", "b"})


def test_resume_during_compensation_does_not_run_a_live_revert_twice(db_url: str) -> None:
    flow = _trio(db_url)
    first = flow.start()
    flow.deliver(only(first, "a"))
    assert flow.begin("b", "w:2").verdict is steps.Verdict.RUN
    planned = flow.finish("b", "w:2", first.epoch, fail=True)
    assert flow.begin("c", "w:2").verdict is steps.Verdict.REFUSE
    planned = steps.refuse(flow.backend, flow.comp, flow.id, "c", first.epoch, "w:2", EXECUTE)
    assert planned is not None and sorted(planned.revert) == ["a", "b"]
    assert flow.begin("b", "w:3", REVERT).verdict is steps.Verdict.RUN  # b's revert is running
    again = flow.start()
    assert again.revert == ["a"]  # a's revert message is sent again; b's revert is left alone
    atoms = flow.atoms()
    assert atoms["b"].state == states.REVERTING and atoms["b"].worker == "w:3"
    assert flow.finish("b", "w:3", first.epoch, REVERT) is not None
    flow.deliver(again)
    assert flow.state == states.REVERTED
    assert reverted_once(flow, {"a", "b"})


def test_resume_during_compensation_reverts_again_a_revert_whose_worker_is_gone(db_url: str) -> None:
    flow = _trio(db_url)
    first = flow.start()
    flow.deliver(only(first, "a", "c"))
    assert flow.begin("b", "w:2").verdict is steps.Verdict.RUN
    planned = flow.finish("b", "w:2", first.epoch, fail=True)
    assert planned is not None and sorted(planned.revert) == ["a", "b", "c"]
    assert flow.begin("b", "dead:3", REVERT).verdict is steps.Verdict.RUN
    flow.age_heartbeat("b")
    again = flow.start()
    assert sorted(again.revert) == ["a", "b", "c"]
    flow.deliver(again)
    assert flow.state == states.REVERTED
    assert flow.transitions(states.REVERTED) == {"a": 1, "b": 1, "c": 1}
    assert flow.claimed[(REVERT, "b")] == 2  # the lost revert ran again
