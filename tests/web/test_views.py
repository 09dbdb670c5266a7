"""The flow view's pages and JSON, read through FlowWeb (no browser): list, flow, changes, escaping, masking."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from celeryflow.web import FlowWeb, Request, WebConfig
from tests.contrib.atoms import SECRET, order_flow, order_store
from tests.web.atoms import XSS, XSS_ATOM, XSS_MESSAGE, finished, hostile_flow


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def logbook(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    return url


def get(web: FlowWeb, path: str, **query: Any) -> Any:
    return web.handle(Request("GET", path, query={k: v if isinstance(v, list) else [str(v)]
                                                  for k, v in query.items()}))


def test_list_newest_first_keyset_pages_filters_and_search(logbook: str) -> None:
    ids = [finished(order_flow, logbook, order_store(f"A-{i}")) for i in range(5)]
    declined = finished(order_flow, logbook, order_store("B-1", decline=True))
    web = FlowWeb(WebConfig(backend=logbook, page_size=2))

    first = json.loads(get(web, "/api/flows").body)
    assert [f["id"] for f in first["flows"]] == [declined, ids[4]]
    assert first["flows"][0]["failed"] == ["charge_card"] and first["flows"][0]["state"] == "REVERTED"
    seen = [f["id"] for f in first["flows"]]
    cursor = first["next_cursor"]
    while cursor:
        page = json.loads(get(web, "/api/flows", cursor=cursor).body)
        seen += [f["id"] for f in page["flows"]]
        cursor = page["next_cursor"]
    assert seen == [declined, *reversed(ids)], "every flow once, newest first"

    only = json.loads(get(web, "/api/flows", state="reverted").body)["flows"]
    assert [f["id"] for f in only] == [declined]
    by_prefix = json.loads(get(web, "/api/flows", q=ids[2][:8]).body)["flows"]
    assert [f["id"] for f in by_prefix] == [ids[2]]
    by_atom = json.loads(get(FlowWeb(WebConfig(backend=logbook)), "/api/flows", q="notify").body)
    assert len(by_atom["flows"]) == 6, "every order flow has an atom named notify"
    assert json.loads(get(web, "/api/flows", name="nope").body)["flows"] == []

    page = get(web, "/", state="REVERTED")
    html = page.body.decode()
    assert page.status == 200 and declined in html and "charge_card" in html
    assert get(web, "/", state="BOGUS").status == 404


def test_flow_page_masks_secrets_and_shows_failure_and_compensation(logbook: str) -> None:
    flow_id = finished(order_flow, logbook, order_store("B-2", decline=True))
    web = FlowWeb(WebConfig(backend=logbook, flower_url="http://flower.example:5555"))
    page = get(web, f"/{flow_id}")
    html = page.body.decode()
    assert page.status == 200
    assert SECRET not in html, "store values named like secrets are masked"
    assert "card declined for order B-2" in html and "Traceback" in html
    assert "compensation order: charge_card → reserve_stock" in html
    assert 'id="cf-graph"' in html and "<svg" in html
    assert "http://flower.example:5555/tasks?name=%22celeryflow%3A%20place-order%20/%20charge_card%22" in html
    config = json.loads(re.search(r'<script type="application/json" id="cf-config">(.*?)</script>', html, re.S)[1])
    assert config["state"] == "REVERTED" and config["atoms"]["charge_card"] == "REVERTED"

    changes = json.loads(get(web, f"/{flow_id}/api/changes", after=0).body)
    assert changes["state"] == "REVERTED" and changes["atoms"]["reserve_stock"] == "REVERTED"
    assert changes["counts"]["total"] == 3
    again = json.loads(get(web, f"/{flow_id}/api/changes", after=changes["last_event"]).body)
    assert again["atoms"] == {} and again["last_event"] == changes["last_event"]
    status = json.loads(get(web, f"/{flow_id}/api/status").body)
    assert status["state"] == "REVERTED"
    assert get(web, "/00000000-0000-0000-0000-000000000000").status == 404


def test_hostile_names_and_messages_render_as_text(sqlite_url: str) -> None:
    flow_id = finished(hostile_flow, sqlite_url)
    web = FlowWeb(WebConfig(backend=sqlite_url))
    for html in (get(web, "/").body.decode(), get(web, f"/{flow_id}").body.decode()):
        assert XSS not in html and XSS_MESSAGE not in html and XSS_ATOM not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    flow_html = get(web, f"/{flow_id}").body.decode()
    assert "&lt;b&gt;boom&lt;/b&gt;" in flow_html
    assert "<script>alert" not in flow_html and "onerror=\"alert" not in flow_html


def test_atoms_paginate_and_big_flows_collapse(sqlite_url: str) -> None:
    flow_id = finished(order_flow, sqlite_url, order_store("C-1"))
    web = FlowWeb(WebConfig(backend=sqlite_url, atoms_per_page=2, graph_limit=2))
    html = get(web, f"/{flow_id}").body.decode()
    assert 'id="cf-graph"' not in html and "too many to draw" in html
    assert html.count("<tr data-atom=") == 2 and "atoms=1" in html
    assert get(web, f"/{flow_id}", atoms=1).body.decode().count("<tr data-atom=") == 1
    only = get(web, f"/{flow_id}", flow="prepare").body.decode()
    assert 'data-atom="reserve_stock"' in only and 'data-atom="notify"' not in only


def test_big_flows_read_results_only_for_the_shown_atoms(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from celeryflow.web import queries

    flow_id = finished(order_flow, sqlite_url, order_store("C-2"))
    declined = finished(order_flow, sqlite_url, order_store("C-3", decline=True))
    monkeypatch.setattr(queries, "BIG_FLOW", 1)
    web = FlowWeb(WebConfig(backend=sqlite_url, atoms_per_page=1, graph_limit=1))
    first = get(web, f"/{flow_id}").body.decode()
    assert "res-C-2" in first and "ch-C-2-42" not in first, "only the page's atom's result is read"
    second = get(web, f"/{flow_id}", atoms=1).body.decode()
    assert "ch-C-2-42" in second and "res-C-2" not in second
    failed = get(web, f"/{declined}").body.decode()
    assert "card declined for order C-3" in failed, "failures are read for every atom"
    assert "compensation order: charge_card → reserve_stock" in failed
