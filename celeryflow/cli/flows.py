"""``celeryflow flows``: list, inspect, resume, suspend, revert and prune flows in the logbook.

How ``show`` renders a flow is in ``flow_view``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from celeryflow import states
from celeryflow.cli.common import (
    DURATION,
    EXIT_FAILED,
    EXIT_INVALID_STATE,
    app_option,
    backend_option,
    fail,
    guarded,
    human_seconds,
    import_modules,
    imports_option,
    load_app,
    open_backend,
    styled,
)
from celeryflow.cli.flow_view import ago, print_events, print_view, view_json
from celeryflow.contrib import snapshot
from celeryflow.exceptions import ConfigurationError, NotFound
from celeryflow.persistence.tables import FlowRow, utcnow

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend

FLOW_STATE = click.Choice(sorted(states.FLOW_STATES), case_sensitive=False)


def console() -> Console:
    """A console that does not squeeze tables to 80 columns when output is not a terminal."""
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def resolve_id(backend: Backend, text: str) -> str:
    """A full flow id from an id or a unique prefix (at least 4 characters).

    Raises:
        NotFound: no flow, or several, match.
    """
    from sqlalchemy import select

    text = text.strip()

    def read(session: Any) -> list[str]:
        exact = session.scalars(select(FlowRow.uuid).where(FlowRow.uuid == text)).all()
        if exact or len(text) < 4:
            return list(exact)
        return list(session.scalars(select(FlowRow.uuid).where(FlowRow.uuid.startswith(text)).limit(5)).all())

    found = backend.run(read, readonly=True)
    if not found:
        raise NotFound(f"No flow {text!r} in the logbook {backend.url.masked}; check the id and --backend")
    if len(found) > 1:
        raise NotFound(f"{text!r} matches several flows ({', '.join(found)}); give more of the id")
    return found[0]


@click.group()
def flows() -> None:
    """Flows in the logbook: list, show, resume, suspend, revert, prune."""


# ---------------------------------------------------------------------------------- list


@flows.command("list")
@backend_option
@click.option("--state", "-s", "state_filter", multiple=True, type=FLOW_STATE,
              help="Only flows in this state (repeat).")
@click.option("--older-than", type=DURATION, default=None, help="Only flows created longer ago, e.g. 7d, 12h.")
@click.option("--newer-than", type=DURATION, default=None, help="Only flows created more recently, e.g. 1h.")
@click.option("--name", default=None, help="Only flows with this name.")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@guarded
def list_(
    backend_url: str | None,
    state_filter: Sequence[str],
    older_than: timedelta | None,
    newer_than: timedelta | None,
    name: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List flows, newest first."""
    backend = open_backend(backend_url)
    wanted = [s.upper() for s in state_filter] or None
    rows = snapshot.list_flows(backend, state=wanted, older_than=older_than, newer_than=newer_than,
                               limit=limit, name=name)
    if as_json:
        click.echo(json.dumps([
            {"id": r.uuid, "name": r.name, "state": r.state, "atoms_done": r.done, "atoms": r.total,
             "running": r.running, "failed": r.failed,
             "created_at": r.created_at.isoformat() if r.created_at else None,
             "finished_at": r.finished_at.isoformat() if r.finished_at else None,
             "seconds": r.seconds}
            for r in rows
        ], indent=2))
        return
    out = console()
    if not rows:
        out.print(f"No flows in {backend.url.masked} match.")
        return
    table = Table(title=f"flows in {backend.url.masked}", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("state")
    table.add_column("atoms", justify="right")
    table.add_column("running / failed")
    table.add_column("created", justify="right")
    table.add_column("took", justify="right")
    for r in rows:
        busy = ", ".join(r.running) + (" ✗ " + ", ".join(r.failed) if r.failed else "")
        table.add_row(r.uuid, r.name, styled(r.state), f"{r.done}/{r.total}", busy, ago(r.created_at),
                      human_seconds(r.seconds))
    out.print(table)


# ---------------------------------------------------------------------------------- show


@flows.command()
@click.argument("flow_id")
@backend_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--traceback", "-t", "tracebacks", is_flag=True, help="Show the tracebacks of failures.")
@click.option("--events", "events", type=click.IntRange(min=0), default=0, help="Also show the last N events.")
@guarded
def show(backend_url: str | None, flow_id: str, as_json: bool, tracebacks: bool, events: int) -> None:
    """One flow: its atoms with states, timings, workers, failures and retry history."""
    backend = open_backend(backend_url)
    view = snapshot.load_flow(backend, resolve_id(backend, flow_id))
    if as_json:
        click.echo(json.dumps(view_json(view), indent=2))
        return
    out = console()
    print_view(out, view, tracebacks=tracebacks)
    if events:
        print_events(out, backend, view.uuid, events)


# -------------------------------------------------------------------- resume / suspend / revert


def _handle(backend_url: str | None, app_ref: str | None, imports: str | None, flow_id: str) -> tuple[Any, bool]:
    from celeryflow.handle import FlowHandle

    app, embedded = load_app(app_ref, backend_url)
    import_modules(imports)
    backend = open_backend(backend_url, app)
    return FlowHandle(resolve_id(backend, flow_id), app=app, backend=backend), embedded


def _wait(handle: Any, timeout: float | None) -> None:
    out = console()
    with out.status(f"waiting for flow {handle.id} …"):
        try:
            handle.wait(timeout=timeout)
        except Exception as exc:
            state = handle.state
            if state in (states.REVERTED, states.FAILURE):
                out.print(f"flow {handle.id}: {styled(state)} ({type(exc).__name__}: {exc})")
                sys.exit(EXIT_FAILED)
            raise
    out.print(f"flow {handle.id}: {styled(handle.state)}")


def _wait_option(fn: Any) -> Any:
    fn = click.option("--timeout", type=float, default=None, help="Seconds to wait at most (with --wait).")(fn)
    return click.option("--wait/--no-wait", default=None,
                        help="Wait until the flow ends (default: only with the embedded worker).")(fn)


@flows.command()
@click.argument("flow_id")
@backend_option
@app_option
@imports_option
@_wait_option
@guarded
def resume(backend_url: str | None, app_ref: str | None, imports: str | None, flow_id: str,
           wait: bool | None, timeout: float | None) -> None:
    """Run a suspended, stalled or reverted flow again from where it stopped."""
    handle, embedded = _handle(backend_url, app_ref, imports, flow_id)
    before = handle.state
    if before in (states.SUCCESS, states.FAILURE):
        fail(f"flow {handle.id} is {before}: nothing to resume"
             + (" (`celeryflow flows revert` compensates it)" if before == states.SUCCESS else ""), EXIT_INVALID_STATE)
    handle.resume()
    console().print(f"flow {handle.id}: {before} → {styled(handle.state)}")
    if wait or (wait is None and embedded):
        _wait(handle, timeout)


@flows.command()
@click.argument("flow_id")
@backend_option
@app_option
@imports_option
@guarded
def suspend(backend_url: str | None, app_ref: str | None, imports: str | None, flow_id: str) -> None:
    """Stop starting atoms of a flow; running atoms finish, then it is SUSPENDED."""
    handle, _ = _handle(backend_url, app_ref, imports, flow_id)
    before = handle.state
    if before not in (states.PENDING, states.RUNNING, states.SUSPENDING):
        fail(f"flow {handle.id} is {before}: only PENDING or RUNNING flows can be suspended", EXIT_INVALID_STATE)
    handle.suspend()
    console().print(f"flow {handle.id}: {before} → {styled(handle.state)}")


@flows.command()
@click.argument("flow_id")
@backend_option
@app_option
@imports_option
@_wait_option
@guarded
def revert(backend_url: str | None, app_ref: str | None, imports: str | None, flow_id: str,
           wait: bool | None, timeout: float | None) -> None:
    """Compensate a flow: revert every atom that executed, in reverse order."""
    handle, embedded = _handle(backend_url, app_ref, imports, flow_id)
    before = handle.state
    if before in (states.PENDING, states.REVERTED):
        fail(f"flow {handle.id} is {before}: nothing executed, nothing to revert", EXIT_INVALID_STATE)
    handle.revert()
    console().print(f"flow {handle.id}: {before} → {styled(handle.state)}")
    if wait or (wait is None and embedded):
        _wait(handle, timeout)


# ---------------------------------------------------------------------------------- prune


@flows.command()
@backend_option
@click.option("--older-than", type=DURATION, default=None,
              help="Delete finished flows whose last progress is older than this, e.g. 7d, 12h "
                   "(default: CELERYFLOW_RETENTION_DAYS).")
@click.option("--state", "-s", "state_filter", multiple=True, type=FLOW_STATE,
              help="Only flows in this state (repeat; default: SUCCESS, FAILURE, REVERTED, SUSPENDED).")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@guarded
def prune(backend_url: str | None, older_than: timedelta | None, state_filter: Sequence[str], dry_run: bool, yes: bool,
          batch_size: int) -> None:
    """Delete old finished flows with their atoms and events (logbook retention)."""
    from sqlalchemy import select

    if older_than is None:
        from celeryflow.runtime.settings import Settings

        days = Settings.from_sources().retention_days
        if days is None:
            raise click.UsageError("give --older-than (e.g. 7d) or set CELERYFLOW_RETENTION_DAYS")
        older_than = timedelta(days=days)
    wanted = sorted({s.upper() for s in state_filter} or states.FLOW_TERMINAL)
    active = [s for s in wanted if s not in states.FLOW_TERMINAL]
    if active:
        raise ConfigurationError(f"Refusing to prune flows that may still run ({', '.join(active)}); "
                                 "revert or suspend them first")
    backend = open_backend(backend_url)
    cutoff = utcnow() - older_than

    def read(session: Any) -> list[Any]:
        query = (select(FlowRow.progress_at).where(FlowRow.state.in_(wanted), FlowRow.progress_at < cutoff)
                 .order_by(FlowRow.progress_at))
        return list(session.scalars(query))

    stamps = backend.run(read, readonly=True)
    out = console()
    what = f"{len(stamps)} flow(s) in {', '.join(wanted)} older than {human_seconds(older_than.total_seconds())}"
    if dry_run:
        out.print(f"would delete {what} from {backend.url.masked}")
        return
    if not stamps:
        out.print(f"nothing to prune in {backend.url.masked}")
        return
    if not yes and not click.confirm(f"Delete {what} from {backend.url.masked}?", default=False):
        sys.exit(EXIT_FAILED)
    deleted = 0
    progress = Progress(TextColumn("pruning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=out, transient=True, disable=not sys.stdout.isatty())
    with progress:
        task = progress.add_task("prune", total=len(stamps))
        # Oldest first, a batch at a time: each step moves the cutoff forward to the next
        # batch boundary, so the bar moves and no transaction is long.
        # (A boundary prune's cutoff lands a hair after the boundary: stay a second clear of the
        # user's cutoff so nothing newer than --older-than is ever touched.)
        for boundary in stamps[batch_size - 1 :: batch_size]:
            if boundary >= cutoff - timedelta(seconds=1):
                break
            deleted += backend.prune(utcnow() - boundary, wanted, batch_size=batch_size)
            progress.update(task, completed=deleted)
        deleted += backend.prune(older_than, wanted, batch_size=batch_size)
        progress.update(task, completed=deleted)
    out.print(f"deleted {deleted} flow(s) from {backend.url.masked}")
