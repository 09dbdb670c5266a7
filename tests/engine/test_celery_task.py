"""Existing ``@app.task`` functions run as atoms with ``CeleryTask`` (issue #12, item 9),
and ``FlowHandle`` answers like Celery's ``AsyncResult``."""

from __future__ import annotations

import pytest

import celeryflow
from celeryflow import exceptions, states, task
from celeryflow.patterns import linear_flow
from tests.engine.atoms import StepError, charge, read_trace, refund, ship


def _shop(trace: str, fail: bool = False) -> linear_flow.Flow:
    return linear_flow.Flow("shop").add(
        task.CeleryTask(charge, revert=refund, provides="charge_id", inject={"trace": trace}),
        task.CeleryTask("shop.ship", provides="shipment", inject={"trace": trace, "fail": fail}),
    )


def test_a_celery_task_runs_as_an_atom(flow_env):
    trace = flow_env.trace()
    results = flow_env.run(_shop(trace), store={"amount": 5})
    assert results["charge_id"] == "charge-5" and results["shipment"] == "shipped charge-5"
    assert [w + " " + n for w, n in read_trace(trace)] == ["execute charge", "execute ship"]


def test_a_failing_celery_task_is_compensated_by_its_revert_task(flow_env):
    trace = flow_env.trace()
    engine = flow_env.load(_shop(trace, fail=True), store={"amount": 7})
    with pytest.raises(StepError, match="cannot ship charge-7"):
        engine.run(timeout=60)
    assert engine.storage.get_flow_state() == states.REVERTED
    assert read_trace(trace)[-1] == ("revert", "charge")


def test_requires_come_from_the_tasks_signature():
    atom = task.CeleryTask(ship)
    assert atom.name == "shop.ship"
    assert set(atom.rebind) == {"charge_id", "trace", "fail"} and atom.optional_params == {"fail"}


def test_an_unknown_task_name_is_a_clear_error():
    with pytest.raises(exceptions.NotRegistered, match=r"no-such\.task"):
        task.CeleryTask("no-such.task")


def test_flow_handle_answers_like_an_async_result(flow_env):
    trace = flow_env.trace()
    handle = celeryflow.submit(_shop(trace), store={"amount": 1}, app=flow_env.app, backend=flow_env.backend)
    assert handle.get(timeout=60)["shipment"] == "shipped charge-1"
    assert handle.ready() and handle.successful() and not handle.failed()
    failing = celeryflow.submit(_shop(trace, fail=True), store={"amount": 2}, app=flow_env.app,
                                backend=flow_env.backend)
    error = failing.get(timeout=60, propagate=False)
    assert isinstance(error, StepError)
    assert failing.ready() and failing.failed() and not failing.successful()
    with pytest.raises(StepError):
        failing.get(timeout=60)
