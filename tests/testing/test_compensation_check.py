"""for_each_failure_point finds a revert that forgets to undo, and names the failure points that exposed it."""

from __future__ import annotations

import pytest

from celeryflow import states
from celeryflow.testing import CompensationBroken, compensation_problems, fail_after, for_each_failure_point
from celeryflow.testing.outcome import Outcome, Step
from celeryflow.testing.runner import FlowRunner
from tests.testing import flows


def test_the_broken_refund_is_found_and_its_failure_points_named(runner: FlowRunner) -> None:
    ledger = flows.new_ledger()
    store = {"ledger": ledger, "item": "A12", "amount": 30}
    with pytest.raises(CompensationBroken) as caught:
        runner.for_each_failure_point(lambda: flows.shop(broken=True), store,
                                      observe=lambda: flows.snapshot(ledger), reset=lambda: flows.clear(ledger))
    report = caught.value.report
    # only once charge has executed does its missing refund show: charge failing after its
    # execute, and ship failing before or after
    assert [r.point for r in report.broken] == [
        "charge fails after its execute", "ship fails before its execute", "ship fails after its execute"]
    first = report.broken[0]
    assert first.problems == ["the world is not as before the run: 'payment' left behind (30)"]
    # the engine's own invariants hold: it reverted charge, once, in order; the revert just did nothing
    assert compensation_problems(first.outcome) == []
    assert first.outcome.reverted == ["charge", "reserve"]
    message = str(caught.value)
    assert "3 broken" in message and "- charge fails after its execute" in message
    assert "'payment' left behind (30)" in message
    assert [r.point for r in report.results if not r.problems] == [
        "reserve fails before its execute", "reserve fails after its execute", "charge fails before its execute"]


def test_the_fixed_flow_passes(runner: FlowRunner) -> None:
    ledger = flows.new_ledger()
    store = {"ledger": ledger, "item": "A12", "amount": 30}
    baseline_world = {"seat": "A12", "payment": 30, "parcel": "pay-seat-A12"}
    found = runner.for_each_failure_point(flows.shop, store, observe=lambda: flows.snapshot(ledger),
                                          reset=lambda: flows.clear(ledger))
    assert found.baseline.state == states.SUCCESS
    assert flows.snapshot(ledger) == {}  # the last point's run compensated everything
    assert runner.run(flows.shop, store).state == states.SUCCESS and flows.snapshot(ledger) == baseline_world
    assert len(found.results) == 6 and not found.broken
    assert "all compensated" in found.report()


def test_graph_branches_broken_refund(runner: FlowRunner) -> None:
    """In a graph, email runs in parallel with charge → ship: a failing email may or may not find
    the payment taken; failing ship always does. The report says which points broke."""
    ledger = flows.new_ledger()
    store = {"ledger": ledger, "item": "B7", "amount": 5}
    found = runner.for_each_failure_point(lambda: flows.shop_graph(broken=True), store,
                                          observe=lambda: flows.snapshot(ledger), reset=lambda: flows.clear(ledger),
                                          raise_on_problems=False)
    broken = {r.point for r in found.broken}
    assert {"charge fails after its execute", "ship fails before its execute",
            "ship fails after its execute"} <= broken
    assert not broken & {"reserve fails before its execute", "reserve fails after its execute",
                         "charge fails before its execute"}
    for result in found.results:
        assert compensation_problems(result.outcome) == [], result.point  # the engine's part is always right


def test_a_check_of_your_own_and_the_default_runner() -> None:
    """Without a runner: the embedded default on a temporary logbook; check() failures are reported too."""
    ledger = flows.new_ledger()

    def no_parcel_reverted(outcome: Outcome) -> None:
        assert "ship" not in outcome.reverted, "ship was reverted"

    with pytest.raises(CompensationBroken, match="check failed: ship was reverted") as caught:
        for_each_failure_point(flows.shop, {"ledger": ledger, "item": "C1", "amount": 1}, check=no_parcel_reverted)
    assert [r.point for r in caught.value.report.broken] == ["ship fails before its execute",
                                                             "ship fails after its execute"]


def test_compensation_problems_reads_the_invariants_off_the_event_log(runner: FlowRunner) -> None:
    ledger = flows.new_ledger()
    outcome = runner.run(flows.shop, {"ledger": ledger, "item": "D", "amount": 2}, fail=fail_after("ship"))
    assert compensation_problems(outcome) == []
    # the same run told out of order: reserve reverted while charge was still in place
    def step(i: int, atom: str, old: str, new: str) -> Step:
        return Step(i, atom, old, new, 1)

    events = [step(1, "reserve", "PENDING", "RUNNING"), step(2, "reserve", "RUNNING", "SUCCESS"),
              step(3, "charge", "PENDING", "RUNNING"), step(4, "charge", "RUNNING", "FAILURE"),
              step(5, "reserve", "SUCCESS", "REVERTING"), step(6, "reserve", "REVERTING", "REVERTED"),
              step(7, "ship", "PENDING", "REVERTING")]
    wrong = Outcome(outcome.flow_uuid, states.REVERTED, {}, {}, [], [], {}, {}, None, events, outcome.comp)
    assert compensation_problems(wrong) == [
        "reserve was reverted before charge, which depend(s) on it, were reverted",
        "ship was reverted but had not executed",
        "executed but never reverted: charge",
    ]
