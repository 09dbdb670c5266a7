"""celeryflow for Flask: ``CeleryFlow(app)``.

::

    from flask import Flask
    from celeryflow.contrib.flask import CeleryFlow

    app = Flask(__name__)
    app.config["CELERYFLOW_BACKEND"] = "postgresql://db/celeryflow"   # the logbook
    flows = CeleryFlow(app)                   # GET /flows/<id> → the flow's state as JSON

    @app.post("/orders")
    def place_order():
        handle = flows.submit(order_flow, store={"order_id": 42})    # returns at once
        return {"flow": handle.id}, 202

Configuration (``app.config``, falling back to the environment):

``CELERYFLOW_BACKEND``       logbook URL (else env ``CELERYFLOW_BACKEND``, else the embedded SQLite file)
``CELERYFLOW_APP``           a Celery app, or ``"module:attr"``; else the app given to ``celeryflow.install``;
                             else the stock app (``celeryflow_tasks``) when ``CELERYFLOW_BROKER_URL`` is set;
                             else the embedded in-process worker (development)
``CELERYFLOW_STATUS_URL``    where the status view lives (``"/flows"``; ``None``: no view)
``CELERYFLOW_STATUS_RESULTS`` include atom results in the status JSON (``False``; secret-looking names masked)
``CELERYFLOW_<NAME>``        any celeryflow setting, applied when the extension installs the Celery app

Flask has no request transaction: ``submit`` writes the flow and sends its first
messages at once. ``submit(..., session=db.session)`` ties it to a Flask-SQLAlchemy
(or any SQLAlchemy) session instead: sent only after that session commits, dropped
if it rolls back (:mod:`celeryflow.contrib.flask_sqlalchemy`).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celeryflow.exceptions import ConfigurationError, NotFound, StorageFailure

if TYPE_CHECKING:
    from celery import Celery
    from flask import Flask, Response

    from celeryflow.handle import FlowHandle
    from celeryflow.persistence.backends.base import Backend

EXTENSION = "celeryflow"


class _State:
    def __init__(self, ext: CeleryFlow, app: Flask) -> None:
        self.ext = ext
        self.config = app.config
        self.lock = threading.Lock()
        self.celery: Celery | None = ext._celery

    def setting(self, name: str, default: Any = None) -> Any:
        value = self.config.get(name)
        if value is None:
            value = os.environ.get(name)
        return default if value is None else value

    def backend_url(self) -> str:
        url = self.setting("CELERYFLOW_BACKEND")
        if url:
            return str(url)
        from celeryflow.runtime.settings import default_logbook_url

        return default_logbook_url()

    def backend(self) -> Backend:
        from celeryflow.persistence.backends import fetch

        return fetch(self.backend_url())

    def celery_app(self) -> Celery:
        with self.lock:
            if self.celery is not None:
                return self.celery
            from celeryflow.install import default_app, install, installed_app

            ref = self.config.get("CELERYFLOW_APP") or os.environ.get("CELERYFLOW_APP")
            app: Any
            if ref is not None:
                app = _import(ref) if isinstance(ref, str) else ref
            elif installed_app() is not None or os.environ.get("CELERYFLOW_BROKER_URL"):
                app = default_app()  # the same rule as engines.load(app=None)
            else:
                from celeryflow.runtime.embedded import embedded_app

                return embedded_app()  # not cached: the embedded app is process-wide anyway
            if "celeryflow.execute" not in app.tasks:
                install(app, backend=self.backend_url(), **self.celeryflow_settings())
            self.celery = app
            return app

    def celeryflow_settings(self) -> dict[str, Any]:
        from celeryflow.runtime.settings import Settings

        out = {}
        for name in Settings.__dataclass_fields__:
            if name != "backend" and self.config.get(f"CELERYFLOW_{name.upper()}") is not None:
                out[name] = self.config[f"CELERYFLOW_{name.upper()}"]
        return out


def _import(ref: str) -> Any:
    module_name, sep, attr = ref.partition(":")
    if not sep:
        module_name, _, attr = ref.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"CELERYFLOW_APP = {ref!r} is not importable: {exc}", exc) from exc


class CeleryFlow:
    """The Flask extension (``CeleryFlow(app)`` or ``CeleryFlow()`` then ``init_app(app)``).

    Args:
        app: the Flask app.
        celery: the Celery app that sends flows (overrides ``CELERYFLOW_APP``).
    """

    def __init__(self, app: Flask | None = None, *, celery: Celery | None = None) -> None:
        self._celery = celery
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        from flask import Blueprint

        app.config.setdefault("CELERYFLOW_STATUS_URL", "/flows")
        app.config.setdefault("CELERYFLOW_STATUS_RESULTS", False)
        app.extensions[EXTENSION] = _State(self, app)
        prefix = app.config["CELERYFLOW_STATUS_URL"]
        if prefix:
            blueprint = Blueprint("celeryflow", __name__, url_prefix=str(prefix).rstrip("/"))
            blueprint.add_url_rule("/<flow_id>", "flow_status", _status_view, methods=["GET"])
            app.register_blueprint(blueprint)

    @staticmethod
    def _state() -> _State:
        from flask import current_app

        try:
            state: _State = current_app.extensions[EXTENSION]
        except KeyError:
            raise ConfigurationError("CeleryFlow is not initialised on this Flask app: call CeleryFlow(app)") from None
        return state

    @property
    def celery(self) -> Celery:
        """The Celery app flows are sent with (resolved on first use)."""
        return self._state().celery_app()

    @property
    def backend(self) -> Backend:
        """The logbook backend."""
        return self._state().backend()

    def submit(self, flow_or_factory: Any, store: Mapping[str, Any] | None = None, *, session: Any = None,
               **kwargs: Any) -> FlowHandle:
        """``celeryflow.submit`` with this app's Celery app and logbook; returns at once.

        Args:
            session: a (Flask-)SQLAlchemy session, e.g. ``db.session``: the flow starts only
                when that session commits, and is dropped if it rolls back
                (:mod:`celeryflow.contrib.flask_sqlalchemy`).
        """
        from celeryflow.handle import submit

        state = self._state()
        if session is not None:
            from celeryflow.contrib.flask_sqlalchemy import submit as submit_in

            return submit_in(flow_or_factory, store, session=session, app=state.celery_app(),
                             backend=state.backend(), **kwargs)
        return submit(flow_or_factory, store=store, app=state.celery_app(), backend=state.backend(), **kwargs)

    def handle(self, flow_id: str) -> FlowHandle:
        """Re-attach to a flow (``.state``, ``.results()``, ``.suspend()``, ``.resume()``, ``.revert()``)."""
        from celeryflow.handle import FlowHandle

        state = self._state()
        return FlowHandle(flow_id, app=state.celery_app(), backend=state.backend())

    def status(self, flow_id: str, *, results: bool | None = None) -> dict[str, Any]:
        """The flow's state as a JSON-able dict (what ``GET /flows/<id>`` returns).

        Raises:
            NotFound: no such flow.
        """
        from celeryflow.contrib import snapshot

        state = self._state()
        with_results = bool(state.config["CELERYFLOW_STATUS_RESULTS"]) if results is None else results
        return snapshot.status(snapshot.load_flow(state.backend(), flow_id), results=with_results)


def _status_view(flow_id: str) -> Response | tuple[Response, int]:
    from flask import jsonify

    try:
        return jsonify(CeleryFlow._state().ext.status(flow_id))
    except NotFound:
        return jsonify({"error": "not found", "id": flow_id}), 404
    except StorageFailure as exc:
        return jsonify({"error": f"logbook unavailable: {type(exc).__name__}"}), 503


__all__ = ["CeleryFlow"]
