"""The dry explain, as text and through ``celeryflow graph --explain``, on the examples' flows."""

from __future__ import annotations

from typing import Any

import pytest

from celeryflow import compiler
from celeryflow.testing import explain
from tests.cli.conftest import invoke


def test_parallel_steps_and_the_compensation_of_a_join(examples: Any) -> None:
    found = explain(examples.webapp.provision_tenant, fails="configure")
    assert found.steps == [["create_database", "create_bucket"], ["configure"], ["send_welcome"]]
    assert found.executed == ["create_database", "create_bucket", "configure"] and found.maybe == []
    assert found.compensation == [["configure"], ["create_bucket", "create_database"]]
    text = found.text()
    assert "1. create_database ∥ create_bucket" in text
    assert "1. revert configure" in text and "2. revert create_bucket ∥ create_database" in text


def test_a_branch_that_may_have_run(examples: Any) -> None:
    found = explain(examples.webapp.provision_tenant(), fails="create_bucket")
    assert found.executed == ["create_bucket"] and found.maybe == ["create_database"]
    assert "may have run by then (in parallel, reverted if they did): create_database" in found.text()


def test_deciders_retries_and_no_failure(examples: Any) -> None:
    ex = examples.graph_flow
    summarise, gift = ex.Summarise("summarise"), ex.VipGift("vip_gift")
    flow = ex.graph_flow.Flow("user-report").add(ex.FetchUser("fetch_user"), ex.FetchOrders("fetch_orders"),
                                                 summarise, gift)
    flow.link(summarise, gift, decider=ex.is_vip)
    text = explain(compiler.compile(flow)).text()
    assert "vip_gift (decider on the link from summarise)" in text and "if " not in text
    from celeryflow import retry
    from celeryflow.patterns import linear_flow

    guarded = linear_flow.Flow("call", retry=retry.Times(3, name="up_to_3")).add(examples.retry.FlakyCall("flaky"))
    found = explain(linear_flow.Flow("retrying").add(guarded), fails="flaky")
    assert found.retry == "up_to_3" and found.compensation == [["flaky"], ["up_to_3"]]
    assert "its retry controller up_to_3 decides first" in found.text()
    assert "1. up_to_3 (retry controller)" in found.text()
    with pytest.raises(ValueError, match="has no atom 'nope'"):
        explain(flow, fails="nope")


def test_celeryflow_graph_explain(examples: Any, tmp_path: Any) -> None:
    examples.webapp
    result = invoke("graph", "webapp:provision_tenant", "--explain", "--fails", "create_database")
    assert result.exit_code == 0, result.output
    assert result.stdout == explain(examples.webapp.provision_tenant, fails="create_database").text() + "\n"
    out = tmp_path / "explained.txt"
    assert invoke("graph", "webapp:provision_tenant", "--explain", "-o", str(out)).exit_code == 0
    assert out.read_text().startswith("flow 'provision-tenant': 4 atoms, 3 steps")
    bad = invoke("graph", "webapp:provision_tenant", "--explain", "--fails", "nope")
    assert bad.exit_code == 2 and "has no atom 'nope'" in bad.stderr
    alone = invoke("graph", "webapp:provision_tenant", "--fails", "configure")
    assert alone.exit_code == 2 and "--fails goes with --explain" in alone.stderr


def test_celeryflow_graph_explain_of_a_flow_in_the_logbook(celeryflow_runner: Any, examples: Any) -> None:
    outcome = celeryflow_runner.run(examples.submit_handle.report_flow, {"pause": 0})
    result = invoke("graph", outcome.flow_uuid[:8], "--explain", "--fails", "step_1", "-b",
                    celeryflow_runner.backend)
    assert result.exit_code == 0, result.output
    assert "executed by then: step_0, step_1" in result.stdout and "2. revert step_0" in result.stdout
