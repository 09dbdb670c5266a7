"""Actions (resume / suspend / revert): off by default, authenticated, confirmed, and only where the state allows."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from celeryflow.contrib import snapshot
from celeryflow.exceptions import ConfigurationError
from celeryflow.web import FlowWeb, Request, WebConfig
from tests.contrib.atoms import order_flow, order_store
from tests.support.procs import wait_for
from tests.web.atoms import finished

TOKEN = "s3cret-token"


def finished_flow(url: str, **store: Any) -> str:
    return finished(order_flow, url, order_store("A-1", **store))


def call(web: FlowWeb, method: str, path: str, *, auth: str | None = None, form: dict[str, str] | None = None) -> Any:
    headers = {"Authorization": auth} if auth else {}
    return web.handle(Request(method, path, headers=headers, form={k: [v] for k, v in (form or {}).items()}))


def state(url: str, flow_id: str) -> str:
    from celeryflow.persistence.backends import fetch

    return snapshot.load_flow(fetch(url), flow_id).state


def test_actions_need_credentials_to_be_enabled() -> None:
    with pytest.raises(ConfigurationError, match="need authentication"):
        WebConfig(actions=True)
    assert WebConfig(actions=True, token=TOKEN).actions


def test_read_only_by_default(sqlite_url: str) -> None:
    flow_id = finished_flow(sqlite_url)
    web = FlowWeb(WebConfig(backend=sqlite_url))
    assert call(web, "POST", f"/{flow_id}/action/revert", auth=f"Bearer {TOKEN}").status == 403
    assert "action-revert" not in call(web, "GET", f"/{flow_id}").body.decode()
    assert state(sqlite_url, flow_id) == "SUCCESS"


def test_refused_without_auth_wrong_state_or_without_confirmation(sqlite_url: str) -> None:
    ok = finished_flow(sqlite_url)
    reverted = finished_flow(sqlite_url, decline=True)
    web = FlowWeb(WebConfig(backend=sqlite_url, actions=True, token=TOKEN, basic_auth=("ops:pw",)))
    assert 'id="action-revert"' in call(web, "GET", f"/{ok}").body.decode()
    for method in ("GET", "POST"):
        refused = call(web, method, f"/{ok}/action/revert", form={"confirm": web.config.sign(ok, "revert")})
        assert refused.status == 401 and "needs authentication" in refused.body.decode()
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert call(web, "POST", f"/{ok}/action/revert", auth="Bearer wrong").status == 401
    assert call(web, "POST", f"/{ok}/action/revert", auth=f"Bearer {TOKEN}").status == 400, "not confirmed"
    assert call(web, "POST", f"/{ok}/action/revert", auth=f"Bearer {TOKEN}",
                form={"confirm": web.config.sign(reverted, "revert")}).status == 400, "another flow's confirmation"
    wrong_state = call(web, "GET", f"/{reverted}/action/revert", auth=f"Bearer {TOKEN}")
    assert wrong_state.status == 409 and "not allowed" in wrong_state.body.decode()
    assert call(web, "GET", f"/{ok}/action/suspend", auth=f"Bearer {TOKEN}").status == 409
    assert call(web, "GET", f"/{ok}/action/explode", auth=f"Bearer {TOKEN}").status == 404
    assert state(sqlite_url, ok) == "SUCCESS" and state(sqlite_url, reverted) == "REVERTED"


def test_confirmed_revert_with_basic_auth_compensates(sqlite_url: str) -> None:
    ok = finished_flow(sqlite_url)
    web = FlowWeb(WebConfig(backend=sqlite_url, actions=True, basic_auth=("ops:pw",)))
    basic = "Basic " + base64.b64encode(b"ops:pw").decode()
    confirm = call(web, "GET", f"/{ok}/action/revert", auth=basic)
    assert confirm.status == 200 and 'id="confirm-form"' in confirm.body.decode()
    done = call(web, "POST", f"/{ok}/action/revert", auth=basic, form={"confirm": web.config.sign(ok, "revert")})
    assert done.status == 303 and done.headers["Location"] == f"/flows/{ok}"
    wait_for(lambda: state(sqlite_url, ok) == "REVERTED", timeout=30, message=lambda: state(sqlite_url, ok))


def test_host_user_authorises_when_trusted(sqlite_url: str) -> None:
    ok = finished_flow(sqlite_url)
    web = FlowWeb(WebConfig(backend=sqlite_url, actions=True, host_auth=True))
    assert web.handle(Request("GET", f"/{ok}/action/revert")).status == 401
    assert web.handle(Request("GET", f"/{ok}/action/revert", user="alice")).status == 200
