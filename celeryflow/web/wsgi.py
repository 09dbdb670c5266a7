"""The flow view as a WSGI application, and views for Django and Flask (behind their auth).

Mount it inside a Django project, so ``login_required`` (or any decorator) guards it::

    # urls.py
    from django.contrib.admin.views.decorators import staff_member_required
    from celeryflow.web.wsgi import FlowWSGI, django_view

    flows = staff_member_required(django_view(FlowWSGI(prefix="/flows")))
    urlpatterns += [re_path(r"^flows(?P<rest>/.*)?$", flows)]

or inside Flask (the blueprint's ``before_request`` can check the login)::

    from celeryflow.web.wsgi import FlowWSGI, flask_blueprint
    app.register_blueprint(flask_blueprint(FlowWSGI(prefix="/flows")))

or anywhere WSGI runs (``gunicorn 'celeryflow.web.wsgi:application'``).
The host's authenticated user (``request.user`` / ``flask.g.user``) is passed on,
so actions can trust the host's login when ``WebConfig(actions=True, trust_user=True)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from celeryflow.web.config import WebConfig
from celeryflow.web.core import FlowWeb, Request

_MAX_FORM = 64 * 1024


class FlowWSGI:
    """A WSGI application serving the view under ``config.prefix``.

    Args:
        config: a :class:`WebConfig`; keyword arguments build one from the environment
            with those overrides (``FlowWSGI(prefix="/flows", actions=False)``).
        user_key: the WSGI environ key holding the host's authenticated user.
    """

    def __init__(self, config: WebConfig | None = None, *, user_key: str = "celeryflow.user", **overrides: Any) -> None:
        self.web = FlowWeb(config or WebConfig.from_env(**overrides))
        self.user_key = user_key

    @property
    def config(self) -> WebConfig:
        return self.web.config

    def to_request(self, environ: dict[str, Any]) -> Request:
        path = environ.get("PATH_INFO") or "/"
        prefix = self.config.prefix
        script = (environ.get("SCRIPT_NAME") or "").rstrip("/")
        full = script + path
        rest = full[len(prefix):] if prefix and full.startswith(prefix) else path
        form: dict[str, list[str]] = {}
        if environ.get("REQUEST_METHOD") == "POST":
            try:
                length = min(int(environ.get("CONTENT_LENGTH") or 0), _MAX_FORM)
            except ValueError:
                length = 0
            body = environ["wsgi.input"].read(length) if length else b""
            form = parse_qs(body.decode("utf-8", "replace"))
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        return Request(method=environ.get("REQUEST_METHOD", "GET"), path=rest or "/",
                       query=parse_qs(environ.get("QUERY_STRING") or ""), form=form, headers=headers,
                       user=environ.get(self.user_key))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = self.web.handle(self.to_request(environ))
        reason = HTTPStatus(response.status).phrase
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body))),
                   ("X-Content-Type-Options", "nosniff"), *response.headers.items()]
        start_response(f"{response.status} {reason}", headers)
        return [response.body]


def django_view(app: FlowWSGI) -> Callable[..., Any]:
    """A Django view serving ``app`` (wrap it in ``login_required`` / ``staff_member_required``)."""

    def view(request: Any, *args: Any, **kwargs: Any) -> Any:
        from django.http import HttpResponse

        environ = dict(request.META)
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = "", request.path
        environ["wsgi.input"] = _Body(request.body)
        environ["CONTENT_LENGTH"] = str(len(request.body))
        user = getattr(request, "user", None)
        environ[app.user_key] = user.get_username() if user is not None and user.is_authenticated else None
        result: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            result["status"], result["headers"] = int(status.split()[0]), headers

        body = b"".join(app(environ, start_response))
        response = HttpResponse(body, status=result["status"])
        for key, value in result["headers"]:
            if key.lower() != "content-length":
                response[key] = value
        return response

    view.csrf_exempt = True  # type: ignore[attr-defined]  # actions carry their own signed confirmation
    return view


def flask_blueprint(app: FlowWSGI, name: str = "celeryflow_flows", user: Callable[[], Any] | None = None) -> Any:
    """A Flask blueprint serving ``app`` under its prefix; ``user()`` names the logged-in user (or None)."""
    import flask

    blueprint = flask.Blueprint(name, __name__)
    prefix = app.config.prefix

    def serve(rest: str = "") -> Any:
        environ = dict(flask.request.environ)
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = "", flask.request.path
        data = flask.request.get_data()
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = _Body(data), str(len(data))
        environ[app.user_key] = user() if user is not None else getattr(flask.g, "user", None)
        result: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            result["status"], result["headers"] = int(status.split()[0]), headers

        body = b"".join(app(environ, start_response))
        return flask.Response(body, status=result["status"],
                              headers=[h for h in result["headers"] if h[0].lower() != "content-length"])

    blueprint.add_url_rule(prefix or "/", "index", serve, methods=["GET", "POST"], strict_slashes=False)
    blueprint.add_url_rule(f"{prefix}/<path:rest>", "page", serve, methods=["GET", "POST"])
    return blueprint


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = -1) -> bytes:
        out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return out


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI entry point configured from ``CELERYFLOW_*`` environment variables."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = FlowWSGI()
    return _DEFAULT(environ, start_response)


_DEFAULT: FlowWSGI | None = None

__all__ = ["FlowWSGI", "application", "django_view", "flask_blueprint"]
