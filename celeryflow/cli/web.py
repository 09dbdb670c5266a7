"""``celeryflow web`` (the flow view alone) and ``celeryflow flower`` (Flower with the flow view mounted)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import click

from celeryflow.cli.common import backend_option, guarded, import_modules, imports_option, open_backend


def _config(backend_url: str | None, prefix: str, actions: bool, token: str | None, basic_auth: Sequence[str],
            flower_url: str | None, app: Any, **extra: Any) -> Any:
    from celeryflow.web.config import WebConfig

    backend = open_backend(backend_url, app)
    return WebConfig.from_env(backend=backend, prefix=prefix, actions=actions or None, token=token,
                              basic_auth=tuple(basic_auth) or None, flower_url=flower_url, app=app, **extra)


def _web_options(fn: Any, *, basic: bool = True) -> Any:
    options = [
        click.option("--actions/--read-only", default=False, envvar="CELERYFLOW_WEB_ACTIONS",
                     help="Allow resume/suspend/revert (needs --token, --basic-auth or Flower's auth)."),
        click.option("--token", envvar="CELERYFLOW_WEB_TOKEN", default=None,
                     help="Bearer token that authorises actions (env CELERYFLOW_WEB_TOKEN)."),
        backend_option,
        imports_option,
    ]
    if basic:
        options.insert(2, click.option(
            "--basic-auth", "basic_auth", multiple=True, metavar="USER:PASSWORD",
            help="Credentials that authorise actions (repeat; env CELERYFLOW_WEB_BASIC_AUTH, comma-separated)."))
    for option in reversed(options):
        fn = option(fn)
    return fn


def _flower_options(fn: Any) -> Any:
    return _web_options(fn, basic=False)


@click.command()
@_web_options
@click.option("--address", default="127.0.0.1", show_default=True, envvar="CELERYFLOW_WEB_ADDRESS")
@click.option("--port", "-p", type=int, default=5556, show_default=True, envvar="CELERYFLOW_WEB_PORT")
@click.option("--prefix", default="/flows", show_default=True, envvar="CELERYFLOW_WEB_PREFIX",
              help="URL path of the pages.")
@click.option("--flower-url", envvar="CELERYFLOW_WEB_FLOWER_URL", default=None,
              help="Flower's base URL, for links to each atom's Celery tasks.")
@click.option("--app", "-A", "app_ref", envvar="CELERYFLOW_APP", default=None,
              help="Celery app actions send messages with (default: the stock app when CELERYFLOW_BROKER_URL is set).")
@guarded
def web(actions: bool, token: str | None, basic_auth: Sequence[str], backend_url: str | None, imports: str | None,
        address: str, port: int, prefix: str, flower_url: str | None, app_ref: str | None) -> None:
    """Serve the flow view: flows list, live flow pages, actions (opt-in) and /metrics."""
    import asyncio

    from tornado.httpserver import HTTPServer

    from celeryflow.web.server import make_app

    app = None
    if actions:
        from celeryflow.cli.common import load_app

        app, _ = load_app(app_ref, backend_url)
    import_modules(imports)
    config = _config(backend_url, prefix, actions, token, basic_auth, flower_url, app)

    async def serve() -> None:
        server = HTTPServer(make_app(config), xheaders=True)
        server.listen(port, address)
        click.echo(f"celeryflow web: http://{address}:{port}{config.prefix}/ (logbook "
                   f"{config.open_backend().url.masked}; actions {'on' if config.actions else 'off'})")
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@_flower_options
@click.option("--app", "-A", "app_ref", envvar="CELERYFLOW_APP", default="celeryflow_tasks", show_default=True,
              help="The Celery app Flower monitors (and actions send messages with).")
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@guarded
def flower(actions: bool, token: str | None, backend_url: str | None, imports: str | None, app_ref: str,
           flower_args: Sequence[str]) -> None:
    """Run Flower with the flow view mounted at /flows (a "Flows" entry in its navigation).

    Other arguments go to Flower, e.g. ``celeryflow flower --port=5555
    --basic-auth=admin:secret``. Flower's own authentication guards the flow pages, and
    a user it authenticated may act on flows when --actions is given.
    """
    from celery.bin.celery import celery as celery_cli

    from celeryflow.cli.common import load_app
    from celeryflow.web.core import FlowWeb
    from celeryflow.web.flower import mount

    url_prefix = os.environ.get("FLOWER_URL_PREFIX", "")
    for arg in flower_args:
        if arg.startswith("--url_prefix=") or arg.startswith("--url-prefix="):
            url_prefix = arg.split("=", 1)[1]
    app, _ = load_app(app_ref, backend_url)
    import_modules(imports)
    prefix = ("/" + url_prefix.strip("/") if url_prefix.strip("/") else "") + "/flows"
    config = _config(backend_url, prefix, actions, token, (), None, app, host_auth=True)
    config.flower_url = "/" + url_prefix.strip("/")  # inside Flower: links to its task pages stay on this server
    mount(FlowWeb(config), url_prefix=url_prefix)
    celery_cli.main(args=["-A", app_ref, "flower", *flower_args], prog_name="celeryflow flower")


__all__ = ["flower", "web"]
