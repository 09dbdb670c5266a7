"""Failure and crash injection: what runs, what is recorded, and that nothing leaks past a run."""

from __future__ import annotations

import pytest

from celeryflow import states
from celeryflow.runtime import intercept
from celeryflow.testing import (
    CrashNotReached,
    Fault,
    crash_after,
    fail_after,
    fail_before,
    fail_revert,
)
from celeryflow.testing.inject import INJECTOR
from celeryflow.testing.runner import FlowRunner
from tests.testing import flows


def _store(ledger: str) -> dict[str, object]:
    return {"ledger": ledger, "item": "Z9", "amount": 7}


def test_before_skips_the_atoms_code_after_runs_it(runner: FlowRunner) -> None:
    ledger = flows.new_ledger()
    before = runner.run(flows.shop, _store(ledger), fail=fail_before("charge"))
    assert before.state == states.REVERTED and before.reverted == ["charge", "reserve"]
    assert "injected: charge fails before its execute" in before.failures["charge"].exception_str
    assert flows.snapshot(ledger) == {}
    # after: charge's code ran (the payment was booked), then its revert refunded it
    spy = flows.new_ledger()
    after = runner.run(lambda: flows.shop(broken=True), _store(spy), fail=fail_after("charge"))
    assert after.reverted == ["charge", "reserve"] and flows.snapshot(spy) == {"payment": 7}
    assert "injected: charge fails after its execute" in after.failures["charge"].exception_str


def test_a_custom_error_and_a_fault_per_atom(runner: FlowRunner) -> None:
    ledger = flows.new_ledger()
    outcome = runner.run(flows.shop, _store(ledger), fail=[Fault("ship", "before", error=TimeoutError("carrier down")),
                                                          fail_revert("reserve")])
    # a compensation that failed: run() raises the revert's failure; the execute one stays recorded
    assert "injected: reserve fails in its revert" in str(outcome.error)
    assert outcome.failures["ship"].exception_str == "carrier down"
    assert outcome.state == states.FAILURE and set(outcome.revert_failures) == {"reserve"}
    assert outcome.reverted == ["ship", "charge", "reserve"]


def test_nothing_leaks_past_a_run(runner: FlowRunner) -> None:
    ledger = flows.new_ledger()
    runner.run(flows.shop, _store(ledger), fail=fail_after("ship"))
    assert not intercept.active()
    assert runner.run(flows.shop, _store(ledger)).state == states.SUCCESS


def test_bad_names_and_points(runner: FlowRunner) -> None:
    with pytest.raises(ValueError, match="flow 'shop' has no atom 'refund'; its atoms are: reserve, charge, ship"):
        runner.run(flows.shop, _store(flows.new_ledger()), fail=fail_after("refund"))
    with pytest.raises(ValueError, match="use one of before, after, revert"):
        Fault("ship", "during")
    assert not intercept.active()


def test_crash_point_never_reached(runner: FlowRunner) -> None:
    ledger = flows.new_ledger()
    with pytest.raises(CrashNotReached, match="ended REVERTED before the process dies after ship's execute"):
        runner.crash(flows.shop, crash_after("ship"), _store(ledger), fail=fail_before("charge"))
    assert not intercept.active()


def test_crash_with_an_earlier_failure_resumes_the_compensation(runner: FlowRunner) -> None:
    """The process dies after charge ran (ship was to fail); the faults died with it: on resume
    charge runs again and the flow succeeds."""
    ledger = flows.new_ledger()
    crashed = runner.crash(flows.shop, crash_after("charge"), _store(ledger), fail=fail_after("ship"))
    assert crashed.outcome.atoms == {"reserve": states.SUCCESS, "charge": states.RUNNING, "ship": states.PENDING}
    assert flows.snapshot(ledger) == {"seat": "Z9", "payment": 7}  # its effects happened; its outcome was lost
    assert INJECTOR.crashed(crashed.flow_uuid) is not None  # still armed until the resume
    resumed = runner.resume(crashed)
    # the fault of the crashed run is gone with its process: the resumed run succeeds
    assert resumed.state == states.SUCCESS and resumed.executed == ["charge", "ship"]
    assert flows.snapshot(ledger) == {"seat": "Z9", "payment": 7, "parcel": "pay-seat-Z9"}
    assert not intercept.active()


def test_a_crash_left_unresumed_is_disarmed_by_close(runner: FlowRunner) -> None:
    crashed = runner.crash(flows.shop, crash_after("reserve"), _store(flows.new_ledger()))
    assert intercept.active() and runner.crashed == {crashed.flow_uuid}
    runner.close()
    assert not intercept.active() and INJECTOR.crashed(crashed.flow_uuid) is None


def test_failure_points_are_executes(runner: FlowRunner) -> None:
    with pytest.raises(ValueError, match="failure points are 'before' and/or 'after'"):
        runner.for_each_failure_point(flows.shop, _store(flows.new_ledger()), where=("revert",))
