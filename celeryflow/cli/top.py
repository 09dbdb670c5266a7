"""``celeryflow top``: a live view of running flows and workers, read from the logbook."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from celeryflow.cli.common import DURATION, app_option, backend_option, guarded, human_seconds, open_backend, styled
from celeryflow.contrib import snapshot
from celeryflow.persistence.tables import utcnow

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend


class TopView:
    """One frame of ``celeryflow top``: counts, running flows, workers, recently finished flows."""

    def __init__(self, backend: Backend, *, window: dt.timedelta, limit: int, app: Any = None) -> None:
        self.backend = backend
        self.window = window
        self.limit = limit
        self.app = app

    def celery_workers(self) -> dict[str, Any] | None:
        """Celery's own view (ping + active counts) when an app with a broker is given."""
        if self.app is None:
            return None
        try:
            inspect = self.app.control.inspect(timeout=0.5)
            active = inspect.active() or {}
        except Exception as exc:  # a top must not die because the broker blinked
            return {"error": str(exc)}
        return {name: len(tasks or []) for name, tasks in active.items()}

    def render(self) -> Group:
        now = utcnow()
        counts = snapshot.count_by_state(self.backend, newer_than=self.window)
        running = snapshot.list_flows(self.backend, state=snapshot.ACTIVE_STATES, limit=self.limit)
        finished = snapshot.list_flows(self.backend, state=["SUCCESS", "FAILURE", "REVERTED", "SUSPENDED"],
                                       newer_than=self.window, limit=8)
        workers = snapshot.worker_views(self.backend, since=self.window)

        summary = Text.assemble(
            ("celeryflow top", "bold"), f"  {now:%H:%M:%S} UTC  {self.backend.url.masked}  last "
            f"{human_seconds(self.window.total_seconds())}: ",
            *[part for state, n in sorted(counts.items()) for part in (Text.from_markup(styled(state)), f" {n}  ")],
        )

        flows = Table(title=f"active flows ({len(running)})", title_justify="left")
        for col in ("id", "name", "state", "progress", "atoms", "running now", "age", "idle"):
            flows.add_column(col, no_wrap=col in ("id", "progress"))
        for f in running:
            bar = ProgressBar(total=max(f.total, 1), completed=f.done, width=16)
            idle = human_seconds((now - f.progress_at).total_seconds()) if f.progress_at else "-"
            busy = [*f.running, *(f"{n} (waiting for a worker with its code)" for n in f.waiting)]
            flows.add_row(f.uuid[:8], f.name, styled(f.state), bar, f"{f.done}/{f.total}", ", ".join(busy),
                          human_seconds(f.seconds), idle)
        if not running:
            flows.add_row("", "[dim]no flow is running[/]", "", "", "", "", "", "")

        wtable = Table(title=f"workers seen in the last {human_seconds(self.window.total_seconds())}",
                       title_justify="left")
        for col in ("worker (host:pid)", "running", "done", "last seen"):
            wtable.add_column(col)
        for w in workers:
            seen = human_seconds((now - w.last_seen).total_seconds()) + " ago" if w.last_seen else "-"
            wtable.add_row(w.worker, ", ".join(w.running) or "[dim]idle[/]", str(w.finished), seen)
        if not workers:
            wtable.add_row("[dim]none[/]", "", "", "")
        celery = self.celery_workers()
        parts: list[Any] = [summary, flows, wtable]
        if celery is not None:
            ctable = Table(title="Celery workers (inspect)", title_justify="left")
            ctable.add_column("worker")
            ctable.add_column("active tasks", justify="right")
            if "error" in celery:
                ctable.add_row(f"[red]{celery['error']}[/]", "")
            for name, n in sorted(celery.items()):
                if name != "error":
                    ctable.add_row(name, str(n))
            if not celery:
                ctable.add_row("[dim]no worker answered[/]", "")
            parts.append(ctable)

        done = Table(title="recently finished", title_justify="left")
        for col in ("id", "name", "state", "atoms", "took", "finished"):
            done.add_column(col, no_wrap=col == "id")
        for f in finished:
            ago = human_seconds((now - f.finished_at).total_seconds()) + " ago" if f.finished_at else "-"
            done.add_row(f.uuid[:8], f.name, styled(f.state), f"{f.done}/{f.total}", human_seconds(f.seconds), ago)
        parts.append(done)
        return Group(*parts)


@click.command()
@backend_option
@app_option
@click.option("--interval", "-i", type=float, default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--window", "-w", type=DURATION, default="1h", show_default=True,
              help="How far back to count flows and workers.")
@click.option("--limit", "-n", type=int, default=25, show_default=True, help="At most this many active flows.")
@click.option("--once", is_flag=True, help="Print one frame and exit (scripts, tests).")
@click.option("--inspect/--no-inspect", "use_inspect", default=None,
              help="Also ask Celery workers over the broker (default: when CELERYFLOW_BROKER_URL or --app is set).")
@guarded
def top(backend_url: str | None, app_ref: str | None, interval: float, window: dt.timedelta, limit: int, once: bool,
        use_inspect: bool | None) -> None:
    """Live view of running flows and workers (Ctrl-C to quit)."""
    from celeryflow.cli.common import load_app
    from celeryflow.cli.flows import console

    app = None
    if use_inspect or (use_inspect is None and (app_ref or os.environ.get("CELERYFLOW_BROKER_URL"))):
        app, embedded = load_app(app_ref, backend_url)
        if embedded:
            app = None
    backend = open_backend(backend_url, app)
    view = TopView(backend, window=window, limit=limit, app=app)
    out = console()
    if once or not sys.stdout.isatty():
        out.print(view.render())
        return
    try:
        with Live(view.render(), console=out, screen=True, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(view.render(), refresh=True)
    except KeyboardInterrupt:
        pass
