"""Shared CLI plumbing: the ``--backend``/``--app`` options, durations, and exit codes.

Exit codes (every command):

==  =====================================================================
0   done
1   the operation ran and failed (a flow ended REVERTED/FAILURE, a render failed)
2   bad input: unknown flow id, malformed duration/option, unregistered atom
3   a service is unreachable: the logbook database or the broker
4   the flow is in a state that does not allow this (e.g. resume a finished flow)
==  =====================================================================
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import click

from celeryflow import exceptions

if TYPE_CHECKING:
    from celery import Celery

    from celeryflow.persistence.backends.base import Backend

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_INVALID_STATE = 4

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")


def parse_duration(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"1d12h"``, ``"30m"``, ``"90s"``, ``"2w"`` → a timedelta.

    Raises:
        click.BadParameter: not a duration with units.
    """
    value = text.strip().lower().replace(" ", "")
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not value or pos != len(value):
        raise click.BadParameter(f"{text!r} is not a duration: use a number and a unit, e.g. 7d, 12h, 1d12h, 30m, 90s")
    return timedelta(seconds=seconds)


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


DURATION = Duration()


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, exceptions.NotFound | exceptions.ConfigurationError | exceptions.NotRegistered
                  | exceptions.SerializationError | exceptions.DependencyFailure | exceptions.Duplicate):
        return EXIT_BAD_INPUT
    if isinstance(exc, exceptions.StorageFailure | exceptions.BrokerUnavailable):
        return EXIT_UNREACHABLE
    if isinstance(exc, exceptions.InvalidState):
        return EXIT_INVALID_STATE
    return EXIT_FAILED


def guarded(fn: F) -> F:
    """Turn celeryflow errors into a one-line message and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except exceptions.CeleryflowError as exc:
            fail(str(exc) or type(exc).__name__, exit_code_for(exc))
        except (ConnectionError, OSError) as exc:
            if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
                fail(str(exc), EXIT_BAD_INPUT)
            fail(f"a service is unreachable: {exc}", EXIT_UNREACHABLE)

    return cast(F, wrapper)


def backend_option(fn: F) -> F:
    return click.option(
        "--backend", "-b", "backend_url", envvar="CELERYFLOW_BACKEND", default=None, metavar="URL",
        help="Logbook URL (env CELERYFLOW_BACKEND; default: the embedded SQLite file).",
    )(fn)


def app_option(fn: F) -> F:
    return click.option(
        "--app", "-A", "app_ref", envvar="CELERYFLOW_APP", default=None, metavar="MODULE[:ATTR]",
        help="Celery app that sends messages (env CELERYFLOW_APP; default: celeryflow_tasks when "
             "CELERYFLOW_BROKER_URL is set, else the embedded in-process worker).",
    )(fn)


def imports_option(fn: F) -> F:
    return click.option(
        "--imports", "imports", envvar="CELERYFLOW_IMPORTS", default=None, metavar="MODULES",
        help="Comma-separated modules defining your atoms and flow factories (env CELERYFLOW_IMPORTS).",
    )(fn)


def resolve_backend_url(backend_url: str | None, app: Any = None) -> str:
    if backend_url:
        return backend_url
    if app is not None and app.conf.get("celeryflow_backend"):
        return str(app.conf.celeryflow_backend)
    from celeryflow.runtime.settings import default_logbook_url

    return default_logbook_url()


def open_backend(backend_url: str | None, app: Any = None, *, check: bool = True) -> Backend:
    """The logbook backend; ``check`` connects once (and migrates if allowed) so failures surface here."""
    from celeryflow.persistence.backends import fetch

    url = resolve_backend_url(backend_url, app)
    backend = fetch(url)
    if check:
        try:
            backend.validate()
        except exceptions.StorageFailure as exc:
            raise exceptions.StorageFailure(
                f"The logbook {backend.url.masked} is unreachable or unusable: {exc}. Check --backend / "
                "CELERYFLOW_BACKEND and that the database is up", exc
            ) from exc
    return backend


def import_modules(imports: str | None) -> None:
    """Import (and allow) the modules that define the user's atoms and factories."""
    from celeryflow import registry

    for module in (m.strip() for m in (imports or "").split(",")):
        if not module:
            continue
        registry.allow_module(module)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise exceptions.ConfigurationError(f"Cannot import {module!r} (from --imports/CELERYFLOW_IMPORTS): {exc}",
                                                exc) from exc


def load_app(app_ref: str | None, backend_url: str | None) -> tuple[Celery | None, bool]:
    """The Celery app for commands that send messages, and whether it is the embedded one.

    ``None`` and embedded when no app and no broker are configured: the flow then
    runs in this process's embedded worker, and the command waits for it.
    """
    if app_ref is None and not os.environ.get("CELERYFLOW_BROKER_URL"):
        from celeryflow.runtime.embedded import embedded_app

        app = embedded_app()
        if backend_url:
            app.conf.celeryflow_backend = backend_url
        return app, True
    if backend_url:
        os.environ["CELERYFLOW_BACKEND"] = backend_url
    if app_ref in (None, "celeryflow_tasks"):
        # the stock app, built from the environment as it is now (not as it was at first import)
        from celeryflow_tasks.app import make_app

        return make_app("celeryflow-cli"), False
    ref = app_ref
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise exceptions.ConfigurationError(f"Cannot import the Celery app module {module_name!r}: {exc}", exc) from exc
    candidates = [attr] if attr else ["app", "celery"]
    for name in candidates:
        app = getattr(module, name, None)
        if app is not None:
            from celeryflow.install import install

            if "celeryflow.execute" not in app.tasks:
                install(app, backend=backend_url)
            return app, False
    raise exceptions.ConfigurationError(f"{ref!r} has no Celery app (looked for {', '.join(candidates)})")


def short(uuid: str) -> str:
    return uuid[:8]


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


STATE_STYLE = {
    "PENDING": "dim",
    "RUNNING": "bold yellow",
    "SUCCESS": "green",
    "FAILURE": "bold red",
    "REVERTING": "bold magenta",
    "REVERTED": "cyan",
    "REVERT_FAILURE": "bold red",
    "RETRYING": "yellow",
    "IGNORE": "dim",
    "SUSPENDING": "blue",
    "SUSPENDED": "blue",
    "RESUMING": "yellow",
}


def styled(state: str) -> str:
    style = STATE_STYLE.get(state, "")
    return f"[{style}]{state}[/]" if style else state
