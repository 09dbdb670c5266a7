"""Settings of the flow web view (``celeryflow web``, ``celeryflow flower``, the WSGI app).

Every setting can come from the environment (``CELERYFLOW_WEB_*``) so the same
view runs alone, inside Flower, in compose and under Django/Flask unchanged.
"""

from __future__ import annotations

import hmac
import os
import secrets
from base64 import b64decode
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celeryflow import states
from celeryflow.exceptions import ConfigurationError

#: actions the view can perform on a flow, and the flow states each one accepts.
#: The same rules as ``celeryflow flows resume|suspend|revert``.
ACTIONS: Mapping[str, frozenset[str]] = {
    "resume": frozenset(states.FLOW_STATES) - {states.SUCCESS, states.FAILURE},
    "suspend": frozenset({states.PENDING, states.RUNNING, states.SUSPENDING}),
    "revert": frozenset(states.FLOW_STATES) - {states.PENDING, states.REVERTED},
}


def _truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class WebConfig:
    """How the flow view reads the logbook and who may act on flows.

    Args:
        backend: the logbook (a URL or a backend object); default ``CELERYFLOW_BACKEND``.
        prefix: URL path the pages live under (``/flows``).
        actions: allow resume / suspend / revert (off by default: read-only).
        token: a bearer token (``Authorization: Bearer …``) that authorises actions.
        basic_auth: ``user:password`` pairs that authorise actions (HTTP basic auth).
        trust_user: an authenticated user set by the host (Django/Flask adapter, Flower's
            auth) authorises actions too.
        host_auth: the host (Flower, Django, Flask) authenticates users and passes them on;
            with it, actions may be enabled without a token of the view's own.
        flower_url: base URL of Flower, for links to each atom's Celery tasks.
        app: the Celery app actions send their messages with (default: the installed one).
        page_size: flows per list page (keyset pagination, newest first).
        graph_limit: flows with more atoms get a subflow summary instead of a drawing.
        stuck_after: seconds without progress before an active flow counts as stuck.
        poll_seconds: how often the flow page asks for changes.
        secret: signs the confirmation forms (random per process by default).
        authorize: a callable ``(request) -> user or None`` the host provides
            (e.g. Flower's or Django's user); overrides nothing, adds a user.
    """

    backend: Any = None
    prefix: str = "/flows"
    actions: bool = False
    token: str | None = None
    basic_auth: tuple[str, ...] = ()
    trust_user: bool = True
    host_auth: bool = False
    flower_url: str | None = None
    app: Any = None
    page_size: int = 50
    graph_limit: int = 400
    atoms_per_page: int = 200
    stuck_after: float = 600.0
    poll_seconds: float = 2.0
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    authorize: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        self.prefix = "/" + self.prefix.strip("/") if self.prefix.strip("/") else ""
        if self.actions and not (self.token or self.basic_auth or self.authorize or self.host_auth):
            raise ConfigurationError(
                "The flow view's actions (resume/suspend/revert) need authentication: set a token "
                "(CELERYFLOW_WEB_TOKEN / --token), basic auth (CELERYFLOW_WEB_BASIC_AUTH=user:password) "
                "or mount the view behind your framework's auth (authorize=...), or leave actions off"
            )
        for pair in self.basic_auth:
            if ":" not in pair:
                raise ConfigurationError(f"basic auth entry {pair.split(':')[0]!r}… must be user:password")
        self._backend_obj: Any = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WebConfig:
        """Settings from ``CELERYFLOW_WEB_*`` variables; ``overrides`` (not None) win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "backend": env.get("CELERYFLOW_BACKEND") or None,
            "prefix": env.get("CELERYFLOW_WEB_PREFIX", "/flows"),
            "actions": _truthy(env.get("CELERYFLOW_WEB_ACTIONS")),
            "token": env.get("CELERYFLOW_WEB_TOKEN") or None,
            "basic_auth": tuple(p for p in (env.get("CELERYFLOW_WEB_BASIC_AUTH") or "").split(",") if p),
            "flower_url": env.get("CELERYFLOW_WEB_FLOWER_URL") or None,
        }
        if env.get("CELERYFLOW_WEB_STUCK_AFTER"):
            values["stuck_after"] = float(env["CELERYFLOW_WEB_STUCK_AFTER"])
        if env.get("CELERYFLOW_WEB_SECRET"):
            values["secret"] = env["CELERYFLOW_WEB_SECRET"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def open_backend(self) -> Any:
        """The logbook backend (opened once, shared by every request)."""
        if self._backend_obj is None:
            from celeryflow.persistence.backends import fetch
            from celeryflow.runtime.settings import default_logbook_url

            backend = self.backend
            if backend is None or isinstance(backend, str):
                backend = fetch(backend or default_logbook_url())
            self._backend_obj = backend
        return self._backend_obj

    def credentials_user(self, authorization: str | None) -> str | None:
        """The user an ``Authorization`` header authenticates with this view's own credentials."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token and hmac.compare_digest(value, self.token):
            return "token"
        if scheme.lower() == "basic" and self.basic_auth:
            try:
                pair = b64decode(value.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                return None
            for allowed in self.basic_auth:
                if hmac.compare_digest(pair, allowed):
                    return pair.split(":", 1)[0]
        return None

    def sign(self, flow_id: str, action: str) -> str:
        """The confirmation token of one action on one flow (a form field)."""
        return hmac.new(self.secret.encode(), f"{flow_id}:{action}".encode(), "sha256").hexdigest()

    def check_signature(self, flow_id: str, action: str, value: str) -> bool:
        return hmac.compare_digest(self.sign(flow_id, action), value or "")


__all__ = ["ACTIONS", "WebConfig"]
