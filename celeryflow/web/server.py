"""The flow view on Tornado: standalone (``celeryflow web``) or mounted in any Tornado app (Flower).

::

    from celeryflow.web.server import make_app, handlers
    app = make_app(WebConfig(backend="postgresql://..."))   # a tornado.web.Application
    app.listen(5556)

    other_app.add_handlers(r".*", handlers(flow_web))        # beside an existing app's pages

Each request runs :meth:`FlowWeb.handle` in the IO loop's executor (the logbook
reads are blocking), so a slow database never stalls the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tornado.web
from tornado.ioloop import IOLoop

from celeryflow.web.config import WebConfig
from celeryflow.web.core import FlowWeb, Request, Response


class FlowHandler(tornado.web.RequestHandler):
    """Hands one request to :class:`FlowWeb`; ``gate`` (optional) authenticates reads first."""

    web: FlowWeb
    gate: Callable[[tornado.web.RequestHandler], Any] | None = None
    fixed_path: str | None = None

    def initialize(self, web: FlowWeb, gate: Callable[[tornado.web.RequestHandler], Any] | None = None,
                   fixed_path: str | None = None) -> None:
        self.web = web
        self.gate = gate
        self.fixed_path = fixed_path

    def check_xsrf_cookie(self) -> None:
        """Actions carry their own signed confirmation field (and need credentials)."""

    async def _serve(self, path: str | None) -> None:
        user = None
        if self.gate is not None:
            user = self.gate(self)
            if user is None:
                return  # the gate answered (a redirect to a login page, a 401)
        request = Request(
            method=self.request.method or "GET",
            path=self.fixed_path if self.fixed_path is not None else (path or "/"),
            query={k: [v.decode("utf-8", "replace") for v in vs] for k, vs in self.request.query_arguments.items()},
            form={k: [v.decode("utf-8", "replace") for v in vs] for k, vs in self.request.body_arguments.items()},
            headers=dict(self.request.headers.items()),
            user=user if user is not True else None,
        )
        response: Response = await IOLoop.current().run_in_executor(None, self.web.handle, request)
        self.write_response(response)

    def write_response(self, response: Response) -> None:
        self.set_status(response.status)
        self.set_header("Content-Type", response.content_type)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy",
                        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:")
        for key, value in response.headers.items():
            self.set_header(key, value)
        self.finish(response.body)

    async def get(self, path: str | None = None) -> None:
        await self._serve(path)

    async def post(self, path: str | None = None) -> None:
        await self._serve(path)


def handlers(web: FlowWeb, gate: Callable[[tornado.web.RequestHandler], Any] | None = None) -> list[Any]:
    """Tornado URL specs serving the view under ``web.config.prefix``."""
    prefix = web.config.prefix
    kwargs = {"web": web, "gate": gate}
    return [
        tornado.web.url(rf"{prefix}(/.*)?", FlowHandler, kwargs, name="celeryflow-flows"),
    ]


class _Root(tornado.web.RequestHandler):
    def initialize(self, target: str) -> None:
        self.target = target

    def get(self) -> None:
        self.redirect(self.target)


class _Health(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish("OK")


def make_app(config: WebConfig | None = None, **settings: Any) -> tornado.web.Application:
    """A Tornado application serving the view alone, with ``/metrics`` and ``/healthcheck`` at the root."""
    web = FlowWeb(config)
    specs = handlers(web)
    if web.config.prefix:
        specs.append((r"/", _Root, {"target": web.config.prefix + "/"}))
        specs.append((r"/metrics", FlowHandler, {"web": web, "fixed_path": "/metrics"}))
    specs.append((r"/healthcheck", _Health))
    return tornado.web.Application(specs, **settings)


__all__ = ["FlowHandler", "handlers", "make_app"]
