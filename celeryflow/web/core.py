"""The flow view as one framework-neutral request handler.

:class:`FlowWeb` turns a :class:`Request` (method, path under the prefix, query,
form, headers, the host's user) into a :class:`Response`. Tornado
(:mod:`celeryflow.web.server`, also inside Flower) and WSGI
(:mod:`celeryflow.web.wsgi`, for Django and Flask) are thin adapters around it, so
every way of running the view serves the same pages.

Routes, under the prefix (``/flows`` by default)::

    /                          the flows list (?state=&name=&q=&cursor=)
    /api/flows                 the same page as JSON
    /<id>                      a flow (?atoms=N&flow=<subflow>&events_before=<event id>)
    /<id>/api/changes?after=N  what changed since event N (the page polls this)
    /<id>/api/status           snapshot.status() of the flow
    /<id>/action/<action>      GET: confirmation; POST: resume / suspend / revert
    /metrics                   Prometheus text format
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celeryflow import exceptions, states
from celeryflow.contrib import snapshot
from celeryflow.web import pages, queries
from celeryflow.web.config import ACTIONS, WebConfig
from celeryflow.web.templates import JS

logger = logging.getLogger(__name__)

_FLOW = re.compile(r"^/([0-9A-Za-z][0-9A-Za-z_-]{3,63})(/.*)?$")
_ACTION = re.compile(r"^/action/([a-z]+)$")


@dataclass
class Request:
    """One request as the view sees it (``path`` is relative to the prefix)."""

    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    form: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    user: Any = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


@dataclass
class Response:
    """Status, body and headers, written out by an adapter."""

    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class _Recent(OrderedDict[str, Any]):
    """The last ``size`` compiled specs read (a flow's spec never changes)."""

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        with self.lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
            return default

    def __setitem__(self, key: Any, value: Any) -> None:
        with self.lock:
            super().__setitem__(key, value)
            while len(self) > self.size:
                self.popitem(last=False)


def _json(doc: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(doc, default=str).encode(), "application/json")


class FlowWeb:
    """The view: ``FlowWeb(config).handle(request) -> Response`` (blocking: run it in a thread).

    Args:
        config: a :class:`WebConfig`; default ``WebConfig.from_env()``.
    """

    def __init__(self, config: WebConfig | None = None) -> None:
        self.config = config or WebConfig.from_env()
        self._metrics: Any = None
        self._masker: Any = None
        self._compilations = _Recent()

    @property
    def backend(self) -> Any:
        return self.config.open_backend()

    def is_masked(self, key: str) -> bool:
        """``flows show``'s rule (settings ``mask_keys``), read once."""
        if self._masker is None:
            self._masker = snapshot._default_masker()
        return bool(self._masker(key))

    # ------------------------------------------------------------------ routing

    def load_flow(self, flow_id: str) -> snapshot.FlowView:
        return snapshot.load_flow(self.backend, flow_id, compilations=self._compilations)

    def handle(self, request: Request) -> Response:
        try:
            return self._route(request)
        except exceptions.NotFound as exc:
            return self._message(404, "Not found", str(exc))
        except exceptions.StorageFailure as exc:
            logger.warning("flow view: the logbook is unreachable: %s", exc)
            return self._message(503, "Logbook unreachable", f"The logbook cannot be read: {exc}")

    def _route(self, request: Request) -> Response:
        path = "/" + request.path.lstrip("/") if request.path else "/"
        if path == "/":
            return self.list_page(request)
        if path == "/api/flows":
            return self.list_json(request)
        if path == "/metrics":
            return self.metrics()
        if path == "/static/app.js":
            return Response(200, JS.encode(), "application/javascript; charset=utf-8",
                            {"Cache-Control": "max-age=300"})
        if path == "/static/app.css":
            return Response(200, pages.css().encode(), "text/css; charset=utf-8", {"Cache-Control": "max-age=300"})
        match = _FLOW.match(path)
        if match is None:
            return self._message(404, "Not found", f"No page {path!r} here.")
        flow_id, rest = match.group(1), match.group(2) or ""
        if rest in ("", "/"):
            return self.flow_page(request, flow_id)
        if rest == "/api/changes":
            return self.changes(request, flow_id)
        if rest == "/api/status":
            return _json(snapshot.status(self.load_flow(flow_id), is_masked=self.is_masked))
        action = _ACTION.match(rest)
        if action:
            return self.action(request, flow_id, action.group(1))
        return self._message(404, "Not found", f"No page {path!r} here.")

    def _message(self, status: int, heading: str, message: str, back: str | None = None) -> Response:
        return Response(status, pages.message_html(self.config, heading, message, back))

    # ------------------------------------------------------------------ pages

    def _list(self, request: Request) -> tuple[queries.FlowPage, list[str]]:
        chosen = [s.upper() for s in request.query.get("state", []) if s]
        unknown = [s for s in chosen if s not in states.FLOW_STATES]
        if unknown:
            raise exceptions.NotFound(
                f"unknown flow state {unknown[0]!r}: use one of {', '.join(sorted(states.FLOW_STATES))}")
        page = queries.list_page(self.backend, states=chosen, name=request.arg("name") or None,
                                 search=request.arg("q"), cursor=request.arg("cursor"), limit=self.config.page_size)
        return page, chosen

    def list_page(self, request: Request) -> Response:
        page, chosen = self._list(request)
        body = pages.list_html(self.config, page, chosen_states=chosen, name=request.arg("name") or None,
                               q=request.arg("q"), cursor=request.arg("cursor"),
                               names=queries.flow_names(self.backend))
        return Response(200, body)

    def list_json(self, request: Request) -> Response:
        page, _ = self._list(request)
        return _json({
            "flows": [{"id": r.uuid, "name": r.name, "state": r.state, "done": r.done, "total": r.total,
                       "running": r.running, "failed": r.failed, "created_at": r.created_at,
                       "finished_at": r.finished_at, "seconds": r.seconds} for r in page.rows],
            "next_cursor": page.next_cursor,
        })

    def flow_page(self, request: Request, flow_id: str) -> Response:
        last = queries.last_event_id(self.backend, flow_id)  # before the view: replaying changes is harmless
        raw_page = request.arg("atoms") or "0"
        atoms_page = int(raw_page) if raw_page.isdigit() else 0
        atom_flow = request.arg("flow") or None
        comp = self._compilations.get(flow_id)
        if comp is None:
            comp = queries.compilation(self.backend, flow_id)
            if comp is not None:
                self._compilations[flow_id] = comp
        if comp is not None and len(comp.atoms) > queries.BIG_FLOW:
            names = [n for n in comp.order if atom_flow is None or comp.atoms[n].flow == atom_flow]
            per = self.config.atoms_per_page
            view = queries.load_big_flow(self.backend, flow_id, comp, names[atoms_page * per:(atoms_page + 1) * per])
        else:
            view = self.load_flow(flow_id)
        before = request.arg("events_before")
        events = queries.timeline(self.backend, flow_id, before=int(before) if before and before.isdigit() else None)
        tasks = None
        if self.config.flower_url is not None:  # links to each attempt's Celery task in Flower
            per = self.config.atoms_per_page
            shown = [n for n in view.atoms if atom_flow is None or view.atoms[n].flow == atom_flow]
            tasks = queries.task_ids(self.backend, flow_id, shown[atoms_page * per:(atoms_page + 1) * per])
        body = pages.flow_html(self.config, view, last_event=last, events=events, atoms_page=atoms_page,
                               atom_flow=atom_flow, is_masked=self.is_masked, can_act=True, tasks=tasks)
        return Response(200, body)

    def changes(self, request: Request, flow_id: str) -> Response:
        after = request.arg("after") or "0"
        doc = queries.changes(self.backend, flow_id, int(after) if after.isdigit() else 0)
        if doc is None:
            return _json({"error": f"no flow {flow_id!r}"}, 404)
        if doc["atoms"]:
            doc["counts"] = queries.atom_counts(self.backend, flow_id)
        return _json(doc)

    # ------------------------------------------------------------------ actions

    def user_for(self, request: Request) -> Any:
        """Who is asking: the view's own credentials, else the host's user (if trusted), else None."""
        user = self.config.credentials_user(request.header("Authorization"))
        if user is None and self.config.trust_user and request.user:
            user = request.user
        if user is None and self.config.authorize is not None:
            user = self.config.authorize(request)
        return user

    def action(self, request: Request, flow_id: str, action: str) -> Response:
        back = f"{self.config.prefix}/{flow_id}"
        if action not in ACTIONS:
            return self._message(404, "Not found", f"No action {action!r}: use resume, suspend or revert.", back)
        if not self.config.actions:
            return self._message(403, "Actions are off",
                                 "This view is read-only: start it with --actions (CELERYFLOW_WEB_ACTIONS=1) and "
                                 "credentials to resume, suspend or revert flows.", back)
        user = self.user_for(request)
        if not user:
            response = self._message(401, "Authentication required",
                                     f"{action} needs authentication: log in (basic auth) or send the view's "
                                     "token as 'Authorization: Bearer <token>'.", back)
            if self.config.basic_auth:
                response.headers["WWW-Authenticate"] = 'Basic realm="celeryflow"'
            return response
        view = self.load_flow(flow_id)
        if view.state not in ACTIONS[action]:
            return self._message(409, f"Cannot {action}",
                                 f"flow {view.uuid} is {view.state}: {action} is not allowed in that state.", back)
        if request.method == "GET":
            return Response(200, pages.confirm_html(self.config, view, action))
        if request.method != "POST":
            return self._message(405, "Method not allowed", "Use the confirmation form.", back)
        signature = (request.form.get("confirm") or [""])[-1]
        if not self.config.check_signature(view.uuid, action, signature):
            return self._message(400, "Not confirmed",
                                 f"{action} was not confirmed: use the confirmation page's button.", back)
        from celeryflow.handle import FlowHandle

        try:
            handle = FlowHandle(view.uuid, app=self.config.app, backend=self.backend)
            getattr(handle, action)()
        except exceptions.InvalidState as exc:
            return self._message(409, f"Cannot {action}", str(exc), back)
        logger.info("flow view: %s %s flow %s (%s)", user, action, view.uuid, view.name)
        return Response(303, b"", headers={"Location": back})

    # ------------------------------------------------------------------ metrics

    def metrics(self) -> Response:
        from celeryflow.web import metrics

        if self._metrics is None:
            self._metrics = metrics.FlowMetrics(self.backend, stuck_after=self.config.stuck_after)
        return Response(200, self._metrics.render(), metrics.CONTENT_TYPE)


__all__ = ["FlowWeb", "Request", "Response"]
