"""The submit path's broker check, and what a broker error really means.

Submitting checks the broker before anything is written, so a dead broker fails at
the caller with nothing half-done. A transport kombu cannot even import (a fresh
install that missed an extra: kombu's Redis transport needs ``redis`` and
``packaging``) is not a dead broker: it is reported as
:class:`~celeryflow.exceptions.TransportNotInstalled`, naming the missing module and
the pip extra that brings it, instead of "unreachable".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from celeryflow.exceptions import BrokerUnavailable, TransportNotInstalled

if TYPE_CHECKING:
    from celery import Celery

#: kombu transport alias -> the pip requirement that installs its dependencies. The
#: transports celeryflow documents come through celeryflow's own extras (which depend
#: on Celery's, as Celery documents them); any other falls back to Celery's extra of
#: the same name (``celery[sqs]``, ``celery[mongodb]``...).
EXTRA_FOR_TRANSPORT: dict[str, str] = {
    "redis": "celeryflow[redis]",
    "rediss": "celeryflow[redis]",
    "sentinel": "celeryflow[redis]",
    # py-amqp is a dependency of kombu itself: missing means a broken install.
    "amqp": "celeryflow",
    "amqps": "celeryflow",
    "pyamqp": "celeryflow",
    "sqla": "celery[sqlalchemy]",
    "sqlalchemy": "celery[sqlalchemy]",
}

#: Modules a transport needs beyond kombu's own dependencies. kombu 5.7's Redis
#: transport does not fail with an ImportError when ``redis`` is missing (it fails
#: with an AttributeError on ``None.Redis``), so these are probed by name.
MODULES_FOR_TRANSPORT: dict[str, tuple[str, ...]] = {
    "redis": ("redis", "packaging"),
    "rediss": ("redis", "packaging"),
    "sentinel": ("redis", "packaging"),
}


def masked(url: Any) -> str:
    """``url`` with its password hidden (kombu's own sanitizer)."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(str(url)))


def transport_name(app: Celery) -> str:
    """The kombu transport alias the app's broker URL selects (``"redis"``, ``"amqp"``...)."""
    explicit = app.conf.get("broker_transport")
    if explicit:
        return str(explicit).lower()
    url = app.conf.broker_write_url or app.conf.broker_url or ""
    first = str(url).split(";")[0].strip()
    scheme = urlsplit(first).scheme if "://" in first else first
    # kombu's "transport+url" form (sqla+postgresql://, redis+socket://): the transport comes first.
    return scheme.split("+")[0].lower() or "amqp"


def _import_error(exc: BaseException) -> ImportError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ImportError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _missing_module(transport: str, exc: BaseException) -> str | None:
    missing = _import_error(exc)
    if missing is not None:
        return (missing.name or "").split(".")[0] or "?"
    for name in MODULES_FOR_TRANSPORT.get(transport, ()):
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def transport_not_installed(app: Celery, exc: BaseException) -> TransportNotInstalled | None:
    """The :class:`TransportNotInstalled` that ``exc`` really is, or None for any other error."""
    transport = transport_name(app)
    module = _missing_module(transport, exc)
    if module is None:
        return None
    extra = EXTRA_FOR_TRANSPORT.get(transport, f"celery[{transport}]")
    return TransportNotInstalled(
        f"The broker {masked(app.conf.broker_url)} needs the Python module {module!r}, which is not "
        f"installed here (kombu's {transport!r} transport imports it): pip install '{extra}'. "
        "Nothing was written or sent",
        module=module, extra=extra, cause=exc,
    )


def check_broker(app: Celery) -> None:
    """Connect to ``app``'s broker once, before anything is written.

    Raises:
        TransportNotInstalled: the transport's Python dependencies are missing.
        BrokerUnavailable: the broker cannot be reached.
    """
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        real = transport_not_installed(app, exc)
        if real is not None:
            raise real from exc
        raise BrokerUnavailable(
            f"The broker {masked(app.conf.broker_url)} is unreachable; nothing was written or sent. "
            "Start it or fix CELERYFLOW_BROKER_URL",
            exc,
        ) from exc
