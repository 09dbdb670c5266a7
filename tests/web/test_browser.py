"""The flow view in a real browser (Debian's chromium + chromium-driver, driven by Selenium).

The list; a running flow whose graph changes colour as its atoms finish, without a
reload; a failed flow showing its failure and compensation; an action refused
without authentication; hostile names rendered as text. With
``CELERYFLOW_WEB_SCREENSHOTS=docs/img`` each page's screenshot is written there.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import celeryflow
from celeryflow import graphing
from celeryflow.web import WebConfig
from tests.contrib.atoms import order_flow, order_store
from tests.support.procs import wait_for
from tests.web.atoms import XSS, XSS_MESSAGE, finished, gate, gated_flow, hostile_flow
from tests.web.conftest import screenshot

pytestmark = [pytest.mark.slow]

RUNNING, SUCCESS, REVERTED = (graphing.STATE_COLORS[s][0] for s in ("RUNNING", "SUCCESS", "REVERTED"))

NODE_FILL = """
var want = 'atom_' + Array.from(new TextEncoder().encode(arguments[0]))
    .map(function (b) { return b.toString(16).padStart(2, '0'); }).join('');
var g = Array.from(document.querySelectorAll('#cf-graph g.node')).find(function (n) {
    return n.querySelector('title').textContent === want; });
if (!g) { return null; }
var shape = g.querySelector('path, polygon');
return [shape.getAttribute('fill'), shape.getAttribute('stroke')];
"""


def fill(browser: Any, atom: str) -> str | None:
    found = browser.execute_script(NODE_FILL, atom)
    return found[0] if found else None


def no_alert(browser: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.accept()


def test_flows_list(browser: Any, serve: Any, sqlite_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    ok = [finished(order_flow, sqlite_url, order_store(f"A-{i}")) for i in range(3)]
    declined = finished(order_flow, sqlite_url, order_store("B-1", decline=True))
    served = serve(WebConfig(backend=sqlite_url))
    browser.get(served.url + "/flows/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#flows tbody tr")
    assert [r.get_attribute("data-flow") for r in rows] == [declined, *reversed(ok)]
    assert rows[0].find_element(By.CSS_SELECTOR, ".cf-failed").text == "charge_card"
    assert rows[1].find_element(By.CSS_SELECTOR, ".cf-state").text == "SUCCESS"
    screenshot(browser, "web-flows-list")
    Select(browser.find_element(By.ID, "filter-state")).select_by_value("REVERTED")
    browser.find_element(By.CSS_SELECTOR, ".cf-filters button").click()
    wait_for(lambda: "state=REVERTED" in browser.current_url, timeout=10)
    assert [r.get_attribute("data-flow") for r in browser.find_elements(By.CSS_SELECTOR, "#flows tbody tr")] == [
        declined]
    browser.find_element(By.LINK_TEXT, "place-order").click()
    wait_for(lambda: browser.current_url.endswith(declined), timeout=10)


def test_running_flow_changes_colour_without_reload(browser: Any, serve: Any, sqlite_url: str) -> None:
    from selenium.webdriver.common.by import By

    prefix = uuid.uuid4().hex[:8]
    handle = celeryflow.submit(gated_flow, factory_kwargs={"prefix": prefix, "steps": 3}, backend=sqlite_url)
    try:
        wait_for(lambda: handle.engine.storage.get_atom_state("step1") == "RUNNING", timeout=30)
        served = serve(WebConfig(backend=sqlite_url, poll_seconds=0.3))
        browser.get(f"{served.url}/flows/{handle.id}")
        assert fill(browser, "step1") == RUNNING
        browser.execute_script("window.__not_reloaded = true;")
        screenshot(browser, "web-flow-running")

        gate(f"{prefix}-1").set()
        wait_for(lambda: fill(browser, "step1") == SUCCESS and fill(browser, "step2") == RUNNING, timeout=30,
                 message=lambda: f"step1 {fill(browser, 'step1')}, step2 {fill(browser, 'step2')}")
        row = browser.find_element(By.CSS_SELECTOR, 'tr[data-atom="step1"] .cf-atom-state').text
        assert row == "SUCCESS"
        gate(f"{prefix}-2").set()
        gate(f"{prefix}-3").set()
        wait_for(lambda: browser.find_element(By.ID, "flow-state").text == "SUCCESS", timeout=30)
        wait_for(lambda: fill(browser, "step3") == SUCCESS, timeout=10)
        assert browser.find_element(By.ID, "flow-progress").text == "3/3 atoms done"
        assert browser.execute_script("return window.__not_reloaded === true;"), "updated in place, not reloaded"
        screenshot(browser, "web-flow-succeeded")
    finally:
        for i in (1, 2, 3):
            gate(f"{prefix}-{i}").set()
        handle.wait(timeout=30)


def test_failed_flow_shows_failure_and_compensation(browser: Any, serve: Any, sqlite_url: str) -> None:
    from selenium.webdriver.common.by import By

    declined = finished(order_flow, sqlite_url, order_store("B-2", decline=True))
    served = serve(WebConfig(backend=sqlite_url, flower_url="http://flower.example:5555"))
    browser.get(f"{served.url}/flows/{declined}")
    assert browser.find_element(By.ID, "flow-state").text == "REVERTED"
    failures = browser.find_element(By.ID, "failures").text
    assert "card declined for order B-2" in failures and "Traceback" in failures
    assert browser.find_element(By.ID, "compensation").text == "compensation order: charge_card → reserve_stock"
    assert browser.execute_script(NODE_FILL, "charge_card") == [REVERTED, "#d00000"], "failed atom outlined in red"
    assert fill(browser, "notify") == graphing.STATE_COLORS["PENDING"][0], "never ran, never reverted"
    assert "***" in browser.find_element(By.CSS_SELECTOR, 'tr[data-atom="reserve_stock"]').text, "masked input"
    timeline = browser.find_element(By.ID, "timeline").text
    assert "RUNNING → FAILURE" in timeline and "REVERTING → REVERTED" in timeline
    screenshot(browser, "web-flow-failed")


def test_action_refused_without_auth(browser: Any, serve: Any, sqlite_url: str) -> None:
    from selenium.webdriver.common.by import By

    from celeryflow.contrib import snapshot
    from celeryflow.persistence.backends import fetch

    ok = finished(order_flow, sqlite_url, order_store("A-9"))
    served = serve(WebConfig(backend=sqlite_url, actions=True, token="only-ops-know"))
    browser.get(f"{served.url}/flows/{ok}")
    browser.find_element(By.ID, "action-revert").click()
    wait_for(lambda: browser.find_elements(By.ID, "message-title"), timeout=10)
    assert browser.find_element(By.ID, "message-title").text == "Authentication required"
    screenshot(browser, "web-action-refused")
    assert snapshot.load_flow(fetch(sqlite_url), ok).state == "SUCCESS", "nothing was reverted"


def test_hostile_names_render_as_text(browser: Any, serve: Any, sqlite_url: str) -> None:
    from selenium.webdriver.common.by import By

    flow_id = finished(hostile_flow, sqlite_url)
    served = serve(WebConfig(backend=sqlite_url))
    browser.get(served.url + "/flows/")
    no_alert(browser)
    assert browser.find_element(By.CSS_SELECTOR, f'tr[data-flow="{flow_id}"] a').text == XSS
    browser.get(f"{served.url}/flows/{flow_id}")
    no_alert(browser)
    assert browser.find_elements(By.CSS_SELECTOR, "#cf-graph svg"), "drawn, names escaped by Graphviz"
    assert browser.find_element(By.ID, "flow-name").text == XSS
    assert XSS_MESSAGE in browser.find_element(By.ID, "failures").text
    injected = browser.find_elements(By.CSS_SELECTOR, "main script:not(#cf-config), main img, #failures b")
    assert not injected, "no injected element"
    screenshot(browser, "web-flow-escaped")
