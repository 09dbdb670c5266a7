"""Django settings → celeryflow: the logbook URL, the Celery app, celeryflow settings.

Settings (all optional):

``CELERYFLOW_BACKEND``
    ``"django"`` (the logbook lives in ``DATABASES["default"]``), ``"django:<alias>"``,
    or a database URL. Unset: the ``CELERYFLOW_BACKEND`` environment variable, else
    the embedded SQLite file.
``CELERYFLOW_APP``
    your Celery app, ``"proj.celery:app"`` (or ``"proj.celery.app"``). Unset: the app
    given to :func:`celeryflow.install`, else the embedded in-process worker
    (development only: its worker threads live in the web process).
``CELERYFLOW_ON_COMMIT``
    default of ``submit(on_commit=...)`` (``True``).
``CELERYFLOW_<NAME>``
    any celeryflow setting (``CELERYFLOW_HEARTBEAT_TIMEOUT = 60``...), applied to the
    app by :func:`install`.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import TYPE_CHECKING, Any

from celeryflow.exceptions import ConfigurationError

if TYPE_CHECKING:
    from celery import Celery

    from celeryflow.persistence.backends.base import Backend

DJANGO = "django"
_lock = threading.Lock()
_app: Celery | None = None

#: Django database OPTIONS passed on to the logbook's connections (libpq / PyMySQL names).
_PG_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "options", "application_name", "target_session_attrs",
               "connect_timeout")


def setting(name: str, default: Any = None) -> Any:
    from django.conf import settings

    return getattr(settings, name, default)


def celeryflow_settings() -> dict[str, Any]:
    """``CELERYFLOW_<NAME>`` Django settings that are celeryflow settings, as ``{name: value}``."""
    from celeryflow.runtime.settings import Settings

    out = {}
    for name in Settings.__dataclass_fields__:
        if name == "backend":
            continue
        value = setting(f"CELERYFLOW_{name.upper()}")
        if value is not None:
            out[name] = value
    return out


def database_alias() -> str | None:
    """The Django database alias holding the logbook, or None when it lives elsewhere."""
    value = setting("CELERYFLOW_BACKEND")
    if isinstance(value, str) and (value == DJANGO or value.startswith(DJANGO + ":")):
        return value.partition(":")[2] or "default"
    return None


def logbook_url_for(alias: str = "default") -> str:
    """The SQLAlchemy URL of Django database ``alias`` (as configured now: the test database under tests).

    Raises:
        ConfigurationError: an engine celeryflow cannot share (in-memory SQLite, Oracle...).
    """
    from django.db import connections
    from sqlalchemy.engine import URL

    conn = connections[alias]
    s = conn.settings_dict
    options = s.get("OPTIONS") or {}
    if conn.vendor == "sqlite":
        name = str(s["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            raise ConfigurationError(
                f"DATABASES[{alias!r}] is an in-memory SQLite database, which other connections cannot see; "
                "use a file (for tests: DATABASES[...]['TEST']['NAME'] = 'test.sqlite3')"
            )
        return f"sqlite:///{os.path.abspath(name)}"
    port = int(s["PORT"]) if s.get("PORT") else None
    host = s.get("HOST") or None
    if conn.vendor == "postgresql":
        query = {k: str(options[k]) for k in _PG_OPTIONS if k in options}
        if host and host.startswith("/"):
            query["host"], host = host, None
        driver = "postgresql+psycopg" if _django_uses_psycopg3() else "postgresql+psycopg2"
    elif conn.vendor == "mysql":
        query = {"charset": str(options.get("charset", "utf8mb4"))}
        driver = "mysql+pymysql"
    else:
        raise ConfigurationError(f"celeryflow cannot keep its logbook in a {conn.vendor} database; "
                                 "set CELERYFLOW_BACKEND to a PostgreSQL, MySQL/MariaDB or SQLite URL")
    url = URL.create(driver, username=s.get("USER") or None, password=s.get("PASSWORD") or None, host=host,
                     port=port, database=s.get("NAME") or None, query=query)
    return url.render_as_string(hide_password=False)


def _django_uses_psycopg3() -> bool:
    try:
        from django.db.backends.postgresql.psycopg_any import is_psycopg3
    except ImportError:  # pragma: no cover - Django < 4.2
        return False
    return bool(is_psycopg3)


def logbook_url() -> str:
    """The logbook URL from Django settings (``CELERYFLOW_BACKEND``), the environment, or the default."""
    alias = database_alias()
    if alias is not None:
        return logbook_url_for(alias)
    value = setting("CELERYFLOW_BACKEND") or os.environ.get("CELERYFLOW_BACKEND")
    if value:
        return str(value)
    from celeryflow.runtime.settings import default_logbook_url

    return default_logbook_url()


def backend() -> Backend:
    from celeryflow.persistence.backends import fetch

    return fetch(logbook_url())


def _import_app(ref: str) -> Celery:
    module_name, sep, attr = ref.partition(":")
    if not sep:
        module_name, _, attr = ref.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"CELERYFLOW_APP = {ref!r}: cannot import {module_name!r}: {exc}", exc) from exc
    app = getattr(module, attr, None)
    if app is None:
        raise ConfigurationError(f"CELERYFLOW_APP = {ref!r}: {module_name!r} has no attribute {attr!r}")
    return app


def install(app: Celery) -> Celery:
    """``celeryflow.install(app)`` with the logbook and settings from Django settings.

    Call it in your ``proj/celery.py`` after ``app.config_from_object(...)``: web
    processes and workers then agree on the logbook URL (messages name the logbook
    by a hash of its URL).
    """
    from celeryflow.install import install as install_app

    return install_app(app, backend=logbook_url(), **celeryflow_settings())


def get_app() -> Celery:
    """The Celery app that sends flows: ``CELERYFLOW_APP``, else the installed one, else the embedded one."""
    global _app
    with _lock:
        if _app is None:
            ref = setting("CELERYFLOW_APP")
            if ref:
                app = ref if not isinstance(ref, str) else _import_app(ref)
                if "celeryflow.execute" not in app.tasks:
                    install(app)
                _app = app
            else:
                from celeryflow.install import default_app

                return default_app()
        return _app


def reset() -> None:
    """Forget the cached app (tests that change settings)."""
    global _app
    with _lock:
        _app = None
