"""``celeryflow.install(app)``: make an existing Celery app run celeryflow flows."""

from __future__ import annotations

import importlib
import os
import threading
from typing import TYPE_CHECKING, Any

from celeryflow.exceptions import ConfigurationError

if TYPE_CHECKING:
    from celery import Celery

_lock = threading.Lock()
_installed: Celery | None = None

#: App-wide Celery settings of the apps celeryflow owns (the stock ``celeryflow_tasks`` app and
#: the embedded default). ``install()`` never applies them to *your* app: celeryflow's own
#: tasks carry late acks, reject-on-worker-lost and JSON as task options, and their Strategy
#: refuses any other content type (docs/configuration.md).
CELERY_SETTINGS: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
}


def install(app: Celery, backend: Any = None, *, beat: bool = True, **settings: Any) -> Celery:
    """Register celeryflow's worker tasks (and the conductor's beat entry) on ``app``.

    Args:
        app: the Celery app of your project.
        backend: the logbook URL (or backend object); default ``app.conf.celeryflow_backend``,
            then ``CELERYFLOW_BACKEND``, then the embedded SQLite file.
        beat: add the conductor sweep to ``app.conf.beat_schedule``.
        **settings: any celeryflow setting (``heartbeat_timeout=30``...), stored as ``celeryflow_<name>``.

    Returns:
        The app, which also becomes the default for ``engines.load(app=None)``.
    """
    global _installed
    from celeryflow.runtime import tasks
    from celeryflow.runtime.settings import Settings, default_logbook_url

    for key, value in settings.items():
        if key not in Settings.__dataclass_fields__:
            raise ConfigurationError(f"Unknown celeryflow setting {key!r}; see docs/configuration.md")
        app.conf[f"celeryflow_{key}"] = value
    if backend is not None:
        url = backend if isinstance(backend, str) else str(getattr(backend, "url_string", None) or backend.url)
        app.conf.celeryflow_backend = url
    resolved = Settings.from_sources(app.conf)
    if not app.conf.get("celeryflow_backend"):
        app.conf.celeryflow_backend = resolved.backend or default_logbook_url()
    # Nothing app-wide: the host app's own tasks are acknowledged, serialized and prefetched
    # exactly as before (celeryflow's tasks carry their options themselves).
    tasks.register_tasks(app)
    from celeryflow import celery_task  # noqa: F401  (registers CeleryTask: workers rebuild adopted tasks)
    from celeryflow.contrib.flower import name_sent_events_by_shadow

    name_sent_events_by_shadow(app)  # Flower shows "<flow> / <atom>" even when task-sent arrives late
    from celeryflow import sweep

    sweep.register_task(app)  # the conductor's sweep, run by a worker when beat sends it
    from celeryflow import registry

    for module in resolved.imports:
        registry.allow_module(module)
    imports = tuple(app.conf.get("imports") or ()) + tuple(resolved.imports)
    app.conf.imports = imports
    for module in app.conf.get("include") or ():
        registry.allow_module(module)
    if beat:
        schedule = dict(app.conf.get("beat_schedule") or {})
        schedule.setdefault("celeryflow-sweep", sweep.beat_entry(resolved))
        app.conf.beat_schedule = schedule
    with _lock:
        from celeryflow.runtime.embedded import is_embedded

        if not is_embedded(app):
            _installed = app
    return app


def import_worker_modules(app: Celery) -> None:
    """Import the modules named by CELERYFLOW_IMPORTS (called at worker start)."""
    from celeryflow import registry

    for module in app.conf.get("imports") or ():
        registry.allow_module(module)
        importlib.import_module(module)


def installed_app() -> Celery | None:
    return _installed


_stock: dict[tuple[str | None, ...], Celery] = {}
_stock_lock = threading.Lock()  # not _lock: make_app() -> install() takes that one


def _stock_app() -> Celery:
    """The stock app for the environment as it is now (one per distinct configuration).

    Built on first use and not made the installed default: the rule stays "a configured
    broker is used", even if the environment changes later (tests, re-configured processes).
    """
    global _installed
    key = tuple(os.environ.get(name) for name in ("CELERYFLOW_BROKER_URL", "CELERYFLOW_BACKEND",
                                                    "CELERYFLOW_RESULT_BACKEND", "CELERYFLOW_IMPORTS",
                                                    "CELERYFLOW_NAMESPACE"))
    with _stock_lock:
        app = _stock.get(key)
        if app is None:
            from celeryflow_tasks.app import make_app

            previous = _installed
            app = _stock[key] = make_app("celeryflow")
            _installed = previous  # make_app installs it; the default stays as it was
        return app


def default_app() -> Celery:
    """The app ``engines.load(app=None)`` uses: one rule for every caller (scripts, views, CLI, Flask).

    The installed app (``install(app)``) if any; else, when a broker is configured
    (``CELERYFLOW_BROKER_URL``), the stock app on that broker (``celeryflow_tasks.app``,
    whose workers run the atoms); else the embedded default (in-process worker).
    """
    if _installed is not None:
        return _installed
    if os.environ.get("CELERYFLOW_BROKER_URL"):
        return _stock_app()
    from celeryflow.runtime.embedded import embedded_app

    return embedded_app()
