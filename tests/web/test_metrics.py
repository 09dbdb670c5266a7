"""Flow metrics in the Prometheus text format: counters follow the logbook's events, gauges its active flows."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import celeryflow
from celeryflow import engines
from celeryflow.web import FlowWeb, Request, WebConfig
from celeryflow.web.metrics import FlowMetrics
from tests.contrib.atoms import order_flow, order_store
from tests.support.procs import wait_for
from tests.web.atoms import gate, gated_flow


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def logbook(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    return url


def test_counters_histograms_and_gauges(logbook: str) -> None:
    metrics = FlowMetrics(logbook, stuck_after=0)
    metrics.render()  # counters start here
    for store in (order_store("A-1"), order_store("B-1", decline=True)):
        engine = engines.load_from_factory(order_flow, store=store, backend=logbook)
        try:
            engine.run(timeout=30)
        except Exception:
            pass
    prefix = uuid.uuid4().hex[:8]
    handle = celeryflow.submit(gated_flow, factory_kwargs={"prefix": prefix, "steps": 2}, backend=logbook)
    wait_for(lambda: handle.engine.storage.get_atom_state("step1") == "RUNNING", timeout=30)
    try:
        found = samples(metrics.render().decode())
        assert value(found, "celeryflow_flows_started_total", flow="place-order") == 2
        assert value(found, "celeryflow_flows_finished_total", flow="place-order", state="SUCCESS") == 1
        assert value(found, "celeryflow_flows_finished_total", flow="place-order", state="REVERTED") == 1
        assert value(found, "celeryflow_atom_duration_seconds_count", flow="place-order", atom="notify") == 1
        assert value(found, "celeryflow_atom_duration_seconds_bucket", flow="place-order", atom="notify",
                     le="+Inf") == 1
        assert value(found, "celeryflow_flows", flow="gated", state="RUNNING") == 1
        assert value(found, "celeryflow_flows_stuck", flow="gated") == 1, "stuck_after=0: any active flow"
        assert value(found, "celeryflow_atoms", state="RUNNING") >= 1
        assert ("celeryflow_logbook_latency_seconds", ()) in found
    finally:
        gate(f"{prefix}-1").set()
        gate(f"{prefix}-2").set()
        handle.wait(timeout=30)
    found = samples(metrics.render().decode())
    assert value(found, "celeryflow_flows_finished_total", flow="gated", state="SUCCESS") == 1
    assert value(found, "celeryflow_flows", flow="gated", state="RUNNING") == 0


def test_metrics_endpoint_on_the_view(sqlite_url: str) -> None:
    web = FlowWeb(WebConfig(backend=sqlite_url))
    response = web.handle(Request("GET", "/metrics"))
    assert response.status == 200 and response.content_type.startswith("text/plain")
    assert "celeryflow_flows_finished_total" in response.body.decode()


def test_sweep_resends_are_counted(logbook: str) -> None:
    """A lost message re-sent by the sweep is on the record (an event of kind "sweep") and in the metric."""
    import datetime as dt

    from celeryflow.patterns import unordered_flow
    from celeryflow.persistence.tables import utcnow
    from tests.support.handdrive import TIMEOUT, HandFlow, Step

    metrics = FlowMetrics(logbook, stuck_after=0)
    metrics.render()  # counters start here
    flow = HandFlow(logbook, unordered_flow.Flow("lossy").add(Step("a"), Step("b")))
    assert sorted(flow.start().execute) == ["a", "b"]  # ... and both messages are lost
    outcome = flow.reclaim(utcnow() + dt.timedelta(seconds=3 * TIMEOUT))
    assert outcome.action == "resent" and sorted(outcome.resent) == ["a", "b"]
    found = samples(metrics.render().decode())
    assert value(found, "celeryflow_sweep_resent_atoms_total", flow="lossy") == 2
