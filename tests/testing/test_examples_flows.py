"""The plugin's runner, failure injection, crash injection and compensation check on the flows of examples/.

Every test runs twice: on the embedded default (SQLite logbook) and on an in-process
worker on the user's own app (Redis broker, PostgreSQL logbook).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from celeryflow import retry, states
from celeryflow.patterns import graph_flow, linear_flow
from celeryflow.testing import compensation_problems, crash_after, fail_after, fail_before, fail_revert
from celeryflow.testing.inject import InjectedFailure
from celeryflow.testing.runner import FlowRunner

TRIP = {"traveller": "Ada", "card": "4111111111111111"}


def hello_flow(examples: Any) -> Any:
    hello = examples.hello
    return lambda: linear_flow.Flow("hello").add(hello.Greet(), hello.Shout(), hello.Count())


def trip_flow(examples: Any) -> Any:
    ex = examples.compensation
    return lambda: linear_flow.Flow("book-trip").add(ex.BookFlight(), ex.BookHotel(), ex.ChargeCard())


def report_flow(examples: Any) -> Any:
    ex = examples.graph_flow

    def build() -> graph_flow.Flow:
        summarise, gift = ex.Summarise("summarise"), ex.VipGift("vip_gift")
        flow = graph_flow.Flow("user-report").add(ex.FetchUser("fetch_user"), ex.FetchOrders("fetch_orders"),
                                                  summarise, gift)
        return flow.link(summarise, gift, decider=ex.is_vip)

    return build


def test_hello_runs_and_every_failure_point_compensates(runner: FlowRunner, examples: Any) -> None:
    outcome = runner.run(hello_flow(examples), store={"name": "celeryflow"})
    assert outcome.state == states.SUCCESS and outcome.error is None
    assert outcome.results["shout"] == "HELLO, CELERYFLOW!" and outcome.results["letters"] == 15
    assert outcome.order == [("execute", "hello.Greet"), ("execute", "hello.Shout"), ("execute", "hello.Count")]
    found = runner.for_each_failure_point(hello_flow(examples), {"name": "celeryflow"})
    assert found.points == [f"hello.{n} fails {w} its execute" for n in ("Greet", "Shout", "Count")
                            for w in ("before", "after")]
    assert not found.broken
    count_fails = found.results[-1].outcome
    assert count_fails.reverted == ["hello.Count", "hello.Shout", "hello.Greet"]


def test_compensation_example_is_reverted_in_reverse_order(runner: FlowRunner, examples: Any) -> None:
    outcome = runner.run(trip_flow(examples), store=TRIP)
    assert outcome.state == states.REVERTED
    assert type(outcome.error).__name__ == "CardDeclined"
    names = ["compensation.BookFlight", "compensation.BookHotel", "compensation.ChargeCard"]
    assert outcome.order == [("execute", n) for n in names] + [("revert", n) for n in reversed(names)]
    assert outcome.atoms == dict.fromkeys(names, states.REVERTED)
    assert compensation_problems(outcome) == []


def test_injected_failure_before_the_natural_one(runner: FlowRunner, examples: Any) -> None:
    outcome = runner.run(trip_flow(examples), store=TRIP, fail=fail_after("compensation.BookHotel"))
    assert isinstance(outcome.error, InjectedFailure)
    assert outcome.order == [("execute", "compensation.BookFlight"), ("execute", "compensation.BookHotel"),
                             ("revert", "compensation.BookHotel"), ("revert", "compensation.BookFlight")]
    assert outcome.atoms["compensation.ChargeCard"] == states.PENDING  # never ran, never reverted
    assert outcome.results["traveller"] == "Ada"


def test_a_revert_that_fails_stops_the_compensation_below_it(runner: FlowRunner, examples: Any) -> None:
    outcome = runner.run(trip_flow(examples), store=TRIP, fail=fail_revert("compensation.BookHotel"))
    assert outcome.state == states.FAILURE
    assert set(outcome.revert_failures) == {"compensation.BookHotel"}
    assert "injected: compensation.BookHotel fails in its revert" in outcome.revert_failures[
        "compensation.BookHotel"].exception_str
    assert outcome.atoms["compensation.BookFlight"] == states.SUCCESS  # what it depends on stays in place
    assert compensation_problems(outcome)[0].startswith("the compensation failed (flow FAILURE): revert of "
                                                        "compensation.BookHotel")


def test_graph_example_parallel_branches_and_decider(runner: FlowRunner, examples: Any) -> None:
    outcome = runner.run(report_flow(examples), store={"user_id": 7})
    assert outcome.state == states.SUCCESS
    assert outcome.results["gift"] == "gift card for user7@example.com"
    assert set(outcome.executed[:2]) == {"fetch_user", "fetch_orders"}
    failed = runner.run(report_flow(examples), store={"user_id": 7}, fail=fail_before("summarise"))
    assert failed.reverted[0] == "summarise" and set(failed.reverted[1:]) == {"fetch_user", "fetch_orders"}
    assert failed.atoms["vip_gift"] == states.PENDING
    assert not runner.for_each_failure_point(report_flow(examples), {"user_id": 7}).broken


def test_retry_example_with_an_atom_that_always_fails(runner: FlowRunner, examples: Any, tmp_path: Path) -> None:
    ex = examples.retry

    def build() -> linear_flow.Flow:
        guarded = linear_flow.Flow("call-service", retry=retry.Times(3, name="up_to_3")).add(
            ex.FlakyCall("flaky_call"))
        return linear_flow.Flow("retrying").add(guarded)

    store = {"counter_file": str(tmp_path / "attempts")}
    outcome = runner.run(build, store=store)
    assert outcome.state == states.SUCCESS and outcome.results["answer"] == 42
    assert outcome.executed.count("flaky_call") == 3  # it failed twice by itself
    # made to fail every time: the retries run out and everything is reverted
    always = runner.run(build, store=store, fail=fail_after("flaky_call"))
    assert always.state == states.REVERTED and always.executed.count("flaky_call") == 3
    assert always.reverted.count("flaky_call") == 3  # each attempt undone once
    assert compensation_problems(always) == []
    # made to fail once: the retry absorbs it
    once = runner.run(build, store=store, fail=fail_after("flaky_call", times=1))
    assert once.state == states.SUCCESS and once.order == [
        ("execute", "up_to_3"), ("execute", "flaky_call"), ("revert", "flaky_call"),
        ("execute", "up_to_3"), ("execute", "flaky_call")]  # the controller decides again, then the retry
    # every attempt's execution is undone once, whichever point fails
    assert not runner.for_each_failure_point(build, store).broken


@pytest.mark.parametrize("recorded", [False, True], ids=["before-outcome", "after-outcome"])
def test_submit_handle_factory_crashed_then_resumed(runner: FlowRunner, examples: Any, recorded: bool) -> None:
    factory = examples.submit_handle.report_flow
    crashed = runner.crash(factory, crash_after("step_1", recorded=recorded), store={"pause": 0})
    assert crashed.outcome.state == states.RUNNING
    assert crashed.outcome.executed == ["step_0", "step_1"]
    assert crashed.outcome.atoms["step_1"] == (states.SUCCESS if recorded else states.RUNNING)
    assert crashed.outcome.atoms["step_2"] == states.PENDING
    resumed = crashed.resume()
    assert resumed.state == states.SUCCESS
    # its outcome was lost: step_1 runs again; recorded: only what it made ready runs
    assert resumed.executed == (["step_2", "step_3"] if recorded else ["step_1", "step_2", "step_3"])
    assert resumed.results["step_3"] == "step_3 done"
    assert resumed.history[:2] == [("execute", "step_0"), ("execute", "step_1")]


def test_webapp_flow_parallel_resources(runner: FlowRunner, examples: Any) -> None:
    provision = examples.webapp.provision_tenant
    store = {"tenant": "acme", "fail": False}
    found = runner.for_each_failure_point(provision, store)
    assert len(found.results) == 8 and not found.broken
    # the example's own switch: configuration fails, both resources are released after it
    failed = runner.run(provision, store={"tenant": "acme", "fail": True})
    assert failed.reverted[0] == "configure" and set(failed.reverted[1:]) == {"create_database", "create_bucket"}
    # the process dies after the bucket: on resume the database (in flight or done) and the rest finish
    crashed = runner.crash(provision, crash_after("create_bucket"), store=store)
    resumed = crashed.resume()
    assert resumed.state == states.SUCCESS and resumed.results["welcomed"] is True
    assert "create_bucket" in resumed.executed and resumed.executed[-2:] == ["configure", "send_welcome"]


def test_failure_in_a_successful_flow_names_the_atom(runner: FlowRunner, examples: Any) -> None:
    outcome = runner.run(hello_flow(examples), store={"name": "x"}, fail=fail_after("hello.Count"))
    assert "hello.Count fails after its execute" in str(outcome.error)
    assert "revert  hello.Count" in str(outcome)
