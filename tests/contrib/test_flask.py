"""``CeleryFlow(app)`` with Flask's test client: a view that starts a flow, a view that reports it."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request

from celeryflow.contrib.flask import CeleryFlow
from tests.contrib.atoms import SECRET, order_flow, order_store
from tests.support.procs import ProcessGroup, celery_worker_cmd


@pytest.fixture(autouse=True)
def restore_installed_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("CELERYFLOW_BACKEND", "CELERYFLOW_BROKER_URL", "CELERYFLOW_APP"):
        monkeypatch.delenv(key, raising=False)
    install_module: Any = importlib.import_module("celeryflow.install")
    previous = install_module._installed
    yield
    install_module._installed = previous


def make_app(config: dict[str, Any]) -> tuple[Flask, CeleryFlow]:
    app = Flask("shop")
    app.config.update(config)
    flows = CeleryFlow()
    flows.init_app(app)  # the factory pattern

    @app.post("/orders")
    def place_order() -> tuple[dict[str, Any], int]:
        data = request.get_json(force=True)
        handle = flows.submit(order_flow, store=order_store(data["order_id"], decline=bool(data.get("decline"))))
        return {"flow": handle.id}, 202

    return app, flows


def poll(client: Any, flow_id: str, timeout: float = 30, prefix: str = "/flows/") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc: dict[str, Any] = client.get(f"{prefix}{flow_id}").get_json()
        if doc["done"] or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def logbook_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    return url


def test_start_and_report_on_the_embedded_worker(logbook_url: str) -> None:
    app, flows = make_app({"CELERYFLOW_BACKEND": logbook_url, "CELERYFLOW_STATUS_RESULTS": True})
    client = app.test_client()
    started = client.post("/orders", json={"order_id": "F-1"})
    assert started.status_code == 202
    flow_id = started.get_json()["flow"]
    doc = poll(client, flow_id)
    assert doc["state"] == "SUCCESS" and doc["done"] is True
    assert doc["atoms"] == {"reserve_stock": "SUCCESS", "charge_card": "SUCCESS", "notify": "SUCCESS"}
    assert doc["results"] == {"reservation": "res-F-1", "charge": "ch-F-1-42", "notified": True}

    declined = client.post("/orders", json={"order_id": "F-2", "decline": True}).get_json()["flow"]
    doc = poll(client, declined)
    assert doc["state"] == "REVERTED"
    assert "card declined for order F-2" in doc["failures"]["charge_card"]
    assert SECRET not in str(doc)

    with app.app_context():
        assert flows.handle(flow_id).state == "SUCCESS"
        assert flows.status(flow_id, results=False).get("results") is None
        assert str(flows.backend.url) == logbook_url

    missing = client.get("/flows/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not found"


def test_status_url_is_configurable(sqlite_url: str) -> None:
    app, _ = make_app({"CELERYFLOW_BACKEND": sqlite_url, "CELERYFLOW_STATUS_URL": "/api/flows/"})
    client = app.test_client()
    flow_id = client.post("/orders", json={"order_id": "F-3"}).get_json()["flow"]
    assert client.get(f"/api/flows/{flow_id}").status_code == 200
    assert client.get(f"/flows/{flow_id}").status_code == 404
    assert "results" not in client.get(f"/api/flows/{flow_id}").get_json()
    # let the embedded worker finish before the fixture closes the logbook under it
    assert poll(client, flow_id, prefix="/api/flows/")["done"]


def test_uninitialised_extension_says_so() -> None:
    from celeryflow.exceptions import ConfigurationError

    app = Flask("bare")
    with app.app_context(), pytest.raises(ConfigurationError, match="CeleryFlow"):
        CeleryFlow().submit(order_flow)


def test_real_worker_over_redis(redis_url: str, postgres_url: str, process_group: ProcessGroup,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Production shape: the stock app on Redis (CELERYFLOW_BROKER_URL), a separate worker, PostgreSQL."""
    env = {"CELERYFLOW_BROKER_URL": redis_url, "CELERYFLOW_BACKEND": postgres_url,
           "CELERYFLOW_IMPORTS": "tests.contrib.atoms"}
    process_group.start("worker", celery_worker_cmd(hostname="flask-test@%h"), env=env)
    process_group.wait_for_log("worker", r"ready\.", timeout=60)
    monkeypatch.setenv("CELERYFLOW_BROKER_URL", redis_url)
    app, flows = make_app({"CELERYFLOW_BACKEND": postgres_url})
    client = app.test_client()
    flow_id = client.post("/orders", json={"order_id": "R-1"}).get_json()["flow"]
    doc = poll(client, flow_id)
    assert doc["state"] == "SUCCESS", process_group.dump()
    with app.app_context():
        assert flows.celery.conf.broker_url == redis_url
    assert "celeryflow: place-order / notify" in process_group.output("worker")
