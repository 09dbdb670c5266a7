"""Each attempt of an atom links to its own Celery task in Flower (the claim records the task id)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from celeryflow import engines
from celeryflow.web import FlowWeb, Request, WebConfig
from tests.contrib.atoms import order_flow, order_store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def logbook(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    return url


def test_the_flow_page_links_every_attempt_to_its_celery_task(logbook: str) -> None:
    engine = engines.load_from_factory(order_flow, store=order_store("B-3", decline=True), backend=logbook)
    seen: list[dict[str, Any]] = []
    engine.atom_notifier.register("*", lambda state, details: seen.append(dict(details)))
    with pytest.raises(Exception, match="card declined"):
        engine.run(timeout=30)
    web = FlowWeb(WebConfig(backend=logbook, flower_url="http://flower.example:5555"))
    html = web.handle(Request("GET", f"/{engine.flow_uuid}")).body.decode()
    links = re.findall(r'<a class="cf-task" href="http://flower\.example:5555/task/([0-9a-f-]{36})">'
                       r'(execute|revert) \d+</a>', html)
    modes = [mode for _, mode in links]
    # charge_card and reserve_stock executed and were reverted; notify never ran
    assert modes.count("execute") == 2 and modes.count("revert") == 2, links
    assert len({task_id for task_id, _ in links}) == 4, "one Celery task per attempt"
    assert all("celery_task_id" not in details for details in seen), "the logbook keeps the task id"
