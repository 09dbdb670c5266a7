"""The same view three ways: Tornado (``celeryflow web``), inside Flask and inside Django behind their auth."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from celeryflow import engines
from celeryflow.web import WebConfig
from tests.contrib.atoms import order_flow, order_store
from tests.support.procs import REPO_ROOT


@pytest.fixture
def flow_id(sqlite_url: str) -> str:
    engine = engines.load_from_factory(order_flow, store=order_store("A-1"), backend=sqlite_url)
    engine.run(timeout=30)
    return str(engine.flow_uuid)


def test_tornado_app_serves_pages_metrics_and_health(serve: Any, sqlite_url: str, flow_id: str) -> None:
    served = serve(WebConfig(backend=sqlite_url))
    root = requests.get(served.url + "/", timeout=10)
    assert root.status_code == 200 and root.url.endswith("/flows/") and flow_id in root.text
    assert "default-src 'self'" in root.headers["Content-Security-Policy"]
    page = requests.get(f"{served.url}/flows/{flow_id}", timeout=10)
    assert page.status_code == 200 and "<svg" in page.text
    changes = requests.get(f"{served.url}/flows/{flow_id}/api/changes?after=0", timeout=10).json()
    assert changes["state"] == "SUCCESS"
    assert "celeryflow_flows" in requests.get(served.url + "/metrics", timeout=10).text
    assert requests.get(served.url + "/healthcheck", timeout=10).text == "OK"
    assert requests.get(served.url + "/flows/static/app.js", timeout=10).headers["Content-Type"].startswith(
        "application/javascript")
    assert requests.get(served.url + "/flows/nope/deeper/path", timeout=10).status_code == 404


def test_flask_blueprint_behind_the_apps_login(sqlite_url: str, flow_id: str) -> None:
    import flask

    from celeryflow.web.wsgi import FlowWSGI, flask_blueprint

    app = flask.Flask("ops")
    blueprint = flask_blueprint(FlowWSGI(backend=sqlite_url, prefix="/admin/flows"))

    @blueprint.before_request
    def login_required() -> Any:
        if flask.request.headers.get("X-User") != "alice":
            return flask.redirect("/login")
        flask.g.user = "alice"
        return None

    app.register_blueprint(blueprint)
    client = app.test_client()
    assert client.get("/admin/flows/").status_code == 302
    listing = client.get("/admin/flows/", headers={"X-User": "alice"})
    assert listing.status_code == 200 and flow_id in listing.get_data(as_text=True)
    assert 'href="/admin/flows/static/app.css"' in listing.get_data(as_text=True)
    page = client.get(f"/admin/flows/{flow_id}", headers={"X-User": "alice"})
    assert page.status_code == 200 and "place-order" in page.get_data(as_text=True)
    changes = client.get(f"/admin/flows/{flow_id}/api/changes?after=0", headers={"X-User": "alice"})
    assert changes.get_json()["state"] == "SUCCESS"


def test_wsgi_application_from_the_environment(sqlite_url: str, flow_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsgiref.util import setup_testing_defaults

    from celeryflow.web import wsgi

    monkeypatch.setenv("CELERYFLOW_BACKEND", sqlite_url)
    monkeypatch.setattr(wsgi, "_DEFAULT", None)
    environ: dict[str, Any] = {"PATH_INFO": "/flows/api/flows"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(wsgi.application(environ, lambda s, h: status.append(s)))
    assert status == ["200 OK"] and flow_id.encode() in body


def test_django_view_behind_login_required(tmp_path: Path, sqlite_url: str, flow_id: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run([sys.executable, "-m", "tests.web.django_mount", sqlite_url, flow_id], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "django mount OK" in result.stdout, result.stdout + result.stderr


def test_celeryflow_web_command(tmp_path: Path, sqlite_url: str, flow_id: str) -> None:
    import socket

    from tests.support.procs import ProcessGroup, wait_for

    refused = subprocess.run([sys.executable, "-m", "celeryflow", "web", "--backend", sqlite_url, "--actions"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert refused.returncode == 2 and "need authentication" in refused.stderr, refused.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with ProcessGroup(tmp_path / "procs") as group:
        group.start("web", [sys.executable, "-m", "celeryflow", "web", "--backend", sqlite_url, "--port", str(port)])

        def listing() -> Any:
            try:
                return requests.get(f"http://127.0.0.1:{port}/flows/", timeout=5)
            except requests.ConnectionError:
                assert group["web"].alive, group.output("web")
                return None

        page = wait_for(listing, timeout=60, interval=0.2, message=lambda: group.output("web"))
        assert page.status_code == 200 and flow_id in page.text
        assert "actions off" in group.output("web")
