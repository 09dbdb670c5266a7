"""Every script in examples/ runs, as a user would run it, with a private logbook.

Each runs as a subprocess (``python examples/<name>.py``) with ``CELERYFLOW_BACKEND``
an SQLite file and ``XDG_DATA_HOME`` under tmp_path, and no broker: the embedded
default. ``webapp.py`` is imported (it must not serve on import) and also served for
real on a free port, then driven over HTTP.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import REPO_ROOT, ProcessGroup

EXAMPLES = REPO_ROOT / "examples"

#: script -> text its output must contain
SCRIPTS = {
    "hello.py": "HELLO, CELERYFLOW! (15 letters)",
    "compensation.py": "cancelled flight FL-123",
    "graph_flow.py": "vip_gift: SUCCESS gift card for user7@example.com",
    "submit_handle.py": "SUCCESS: ['step_0 done', 'step_1 done', 'step_2 done', 'step_3 done']",
    "retry.py": "answer: 42 after 3 attempts",
}
SERVED = {"webapp.py"}


def example_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERYFLOW_")}
    env.update(CELERYFLOW_BACKEND=f"sqlite:///{tmp_path / 'logbook.db'}", XDG_DATA_HOME=str(tmp_path / "xdg"),
               PYTHONUNBUFFERED="1")
    return env


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(SCRIPTS) | SERVED


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_runs(script: str, tmp_path: Path) -> None:
    env = example_env(tmp_path)
    result = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert SCRIPTS[script] in result.stdout, result.stdout
    # the flow is in the private logbook, where `celeryflow flows list` finds it
    listed = subprocess.run([sys.executable, "-m", "celeryflow", "flows", "list", "--json"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout), "the example left no flow in its logbook"
    assert not (tmp_path / "xdg" / "celeryflow" / "logbook.sqlite").exists()  # the private logbook was used


def test_graph_example_writes_the_graph(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(EXAMPLES / "graph_flow.py"), str(tmp_path / "report.svg")],
                            cwd=tmp_path, env=example_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    dot = (tmp_path / "report.dot").read_text()
    assert "fetch_user" in dot and "vip_gift" in dot and "decider" in dot


def test_webapp_is_importable_without_serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERYFLOW_BACKEND", f"sqlite:///{tmp_path / 'logbook.db'}")
    monkeypatch.delenv("CELERYFLOW_BROKER_URL", raising=False)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    webapp: Any = importlib.import_module("webapp")
    try:
        page = webapp.app.test_client().get("/")
        assert page.status_code == 200 and b"Provision a tenant" in page.data
        assert webapp.provision_tenant().name == "provision-tenant"
    finally:
        sys.modules.pop("webapp", None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        payload = response.read()
        kind = response.headers.get("Content-Type", "")
        return response.status, json.loads(payload) if "json" in kind else payload.decode()


def test_webapp_serves_flows(tmp_path: Path, process_group: ProcessGroup) -> None:
    port = _free_port()
    env: dict[str, str | None] = {**example_env(tmp_path), "WEBAPP_PORT": str(port), "WEBAPP_STEP_SECONDS": "0.05"}
    process_group.start("webapp", [sys.executable, str(EXAMPLES / "webapp.py")], env=env, cwd=tmp_path)
    process_group.wait_for_log("webapp", rf"Running on http://127\.0\.0\.1:{port}", timeout=30)
    base = f"http://127.0.0.1:{port}"

    def finished(flow_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            status, doc = _http("GET", f"{base}/flows/{flow_id}")
            assert status == 200
            if doc["done"] or time.monotonic() > deadline:
                return dict(doc)
            time.sleep(0.1)

    status, started = _http("POST", f"{base}/tenants", {"tenant": "acme"})
    assert status == 202
    doc = finished(started["flow"])
    assert doc["state"] == "SUCCESS", doc
    assert doc["results"]["welcomed"] is True and doc["results"]["bucket"] == "s3://tenants/acme"

    status, failing = _http("POST", f"{base}/tenants", {"tenant": "globex", "fail": True})
    doc = finished(failing["flow"])
    assert doc["state"] == "REVERTED" and "quota exceeded" in doc["failures"]["configure"]
    assert doc["atoms"]["create_database"] == doc["atoms"]["create_bucket"] == "REVERTED"

    status, page = _http("GET", f"{base}/")
    assert status == 200 and started["flow"][:8] in page and failing["flow"][:8] in page
    assert "Traceback" not in process_group.output("webapp")
    # recorded under the module name workers import (CELERYFLOW_IMPORTS=webapp), not __main__
    from celeryflow.persistence.backends import fetch

    spec = fetch(str(env["CELERYFLOW_BACKEND"])).get_flow_details(started["flow"]).spec
    assert spec["factory"]["ref"] == "webapp:provision_tenant"
