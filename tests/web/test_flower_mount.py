"""``celeryflow flower``: Flower (a real process, real Redis) with the flow pages and a "Flows" nav entry.

Flower's own basic auth guards the flow pages; the flow pages link to Flower's task list.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import pytest
import requests

from celeryflow import engines
from tests.contrib.atoms import order_flow, order_store
from tests.support.procs import ProcessGroup, wait_for

pytestmark = [pytest.mark.services]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_flower_with_flow_pages(redis_url: str, sqlite_url: str, process_group: ProcessGroup) -> None:
    engine = engines.load_from_factory(order_flow, store=order_store("A-1"), backend=sqlite_url)
    engine.run(timeout=30)
    port = free_port()
    process_group.start("flower", [
        sys.executable, "-m", "celeryflow", "flower", "--backend", sqlite_url, f"--port={port}",
        "--address=127.0.0.1", "--basic-auth=admin:pw", "--url_prefix=ops",
    ], env={"CELERYFLOW_BROKER_URL": redis_url, "CELERYFLOW_BACKEND": sqlite_url})
    base = f"http://127.0.0.1:{port}/ops"
    auth = ("admin", "pw")

    def up() -> Any:
        try:
            return requests.get(base + "/healthcheck", timeout=5).status_code == 200
        except requests.ConnectionError:
            assert process_group["flower"].alive, process_group.output("flower")
            return False

    wait_for(up, timeout=60, interval=0.2, message=lambda: process_group.output("flower")[-3000:])
    assert requests.get(base + "/flows/", timeout=10).status_code == 401, "Flower's auth guards the flow pages"
    listing = requests.get(base + "/flows/", auth=auth, timeout=10)
    assert listing.status_code == 200 and engine.flow_uuid in listing.text
    assert 'href="/ops/flows/static/app.css"' in listing.text
    page = requests.get(f"{base}/flows/{engine.flow_uuid}", auth=auth, timeout=10)
    assert page.status_code == 200 and "/ops/tasks?name=%22celeryflow%3A%20place-order" in page.text
    workers = requests.get(base + "/workers", auth=auth, timeout=10)
    assert workers.status_code == 200 and 'id="celeryflow-nav"' in workers.text and 'href="/ops/flows/"' in workers.text
    assert "celeryflow_flows" in requests.get(base + "/flows/metrics", auth=auth, timeout=10).text
    assert requests.get(base + "/tasks", auth=auth, timeout=10).status_code == 200, "Flower's own pages still work"
