"""How ``celeryflow flows show`` renders one flow: its JSON document, its tables, its last events."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from celeryflow import states
from celeryflow.cli.common import human_seconds, styled
from celeryflow.contrib import snapshot
from celeryflow.persistence.tables import utcnow

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend


def ago(value: Any) -> str:
    """``value`` (a UTC datetime) as "3m ago"; ``-`` when unknown."""
    return "-" if value is None else human_seconds((utcnow() - value).total_seconds()) + " ago"


def brief(value: Any, width: int = 60) -> str:
    """``value`` as text (JSON unless a string) cut to ``width`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def view_json(view: snapshot.FlowView) -> dict[str, Any]:
    """The flow as the JSON document of ``flows show --json`` (its store masked)."""
    def ts(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": view.uuid,
        "name": view.name,
        "state": view.state,
        "epoch": view.epoch,
        "created_at": ts(view.created_at),
        "finished_at": ts(view.finished_at),
        "seconds": view.seconds,
        "owner": view.owner,
        "store": snapshot.plain(view.masked_store()),
        "failures": {n: f.pformat() for n, f in view.failures.items()},
        "reverted_order": view.reverted_order,
        "atoms": [
            {
                "name": a.name, "kind": a.kind, "state": a.state, "intention": a.intention,
                "attempts": a.attempts, "starts": a.starts, "waiting": a.waiting, "worker": a.worker,
                "started_at": ts(a.started_at),
                "finished_at": ts(a.finished_at), "seconds": a.seconds,
                "failure": a.failure.pformat() if a.failure else None,
                "revert_failure": a.revert_failure.pformat() if a.revert_failure else None,
                "history": [
                    {"value": snapshot.plain(value), "failures": {n: f.pformat() for n, f in fails.items()}}
                    for value, fails in a.history
                ],
            }
            for a in view.atoms.values()
        ],
    }


def print_view(out: Console, view: snapshot.FlowView, *, tracebacks: bool = False) -> None:
    """Print the flow's header, its atoms in execution order, its failures and its retry histories."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("flow", f"{view.name}  [dim]{view.uuid}[/]")
    head.add_row("state", f"{styled(view.state)}  (epoch {view.epoch}, {view.done}/{view.total} atoms done)")
    head.add_row("created", f"{view.created_at:%Y-%m-%d %H:%M:%S} UTC ({ago(view.created_at)})"
                 if view.created_at else "-")
    head.add_row("took", human_seconds(view.seconds) + ("" if view.finished_at else " so far"))
    if view.owner:
        head.add_row("driven by", view.owner)
    if view.store:
        head.add_row("store", ", ".join(f"{k}={brief(v, 30)}" for k, v in view.masked_store().items()))
    out.print(Panel(head, title="celeryflow", title_align="left", expand=False))

    table = Table(title="atoms (execution order)", title_justify="left")
    for col, kw in (("#", {"justify": "right"}), ("atom", {}), ("kind", {}), ("state", {}),
                    ("starts", {"justify": "right"}), ("worker", {}), ("started", {}),
                    ("took", {"justify": "right"}), ("result / failure", {})):
        table.add_column(col, **kw)  # type: ignore[arg-type]
    for i, a in enumerate(view.atoms.values(), 1):
        if a.failure is not None:
            outcome = f"[red]{brief(a.failure.pformat(), 70)}[/]"
        elif a.revert_failure is not None:
            outcome = f"[red]revert: {brief(a.revert_failure.pformat(), 62)}[/]"
        elif a.waiting:
            outcome = f"[yellow]{escape(brief(a.waiting, 90))}[/]"
        elif a.state == states.SUCCESS:
            outcome = brief(view.masked_result(a.name))  # a provided card number is a secret too
        else:
            outcome = ""
        table.add_row(str(i), a.name, a.kind, styled(a.state), str(a.starts), a.worker or "",
                      f"{a.started_at:%H:%M:%S}" if a.started_at else "", human_seconds(a.seconds),
                      Text.from_markup(outcome) if outcome.startswith(("[red]", "[yellow]")) else Text(outcome))
    out.print(table)

    for a in view.atoms.values():
        if a.waiting:
            out.print(Text(f"{a.name} is waiting: {a.waiting}", style="yellow"))
    if view.reverted_order:
        out.print("compensation order: " + " → ".join(view.reverted_order))
    failed = [(a.name, "execute", a.failure) for a in view.atoms.values() if a.failure is not None]
    failed += [(a.name, "revert", a.revert_failure) for a in view.atoms.values() if a.revert_failure is not None]
    # a failure of the flow itself (e.g. a spec that cannot be decoded), not of one of its atoms
    failed += [(name, "flow", f) for name, f in view.failures.items() if name not in view.atoms]
    if failed:
        out.print("[bold]failures[/]")
        for name, phase, failure in failed:
            out.print(f"  {name} ({phase}): [red]{failure.pformat()}[/]", markup=True)
            if tracebacks and failure.traceback_str:
                out.print(Text(failure.traceback_str.rstrip()), style="dim")
    for a in view.atoms.values():
        if a.kind != "retry" or not a.history:
            continue
        hist = Table(title=f"retry history of {a.name}", title_justify="left")
        hist.add_column("attempt", justify="right")
        hist.add_column("value")
        hist.add_column("failures")
        for n, (value, fails) in enumerate(a.history, 1):
            hist.add_row(str(n), brief(value), "; ".join(f"{k}: {f.pformat()}" for k, f in fails.items()) or "-")
        out.print(hist)


def print_events(out: Console, backend: Backend, flow_uuid: str, limit: int) -> None:
    """Print the flow's last ``limit`` events, oldest first."""
    from sqlalchemy import select

    from celeryflow.persistence.tables import EventRow

    def read(session: Any) -> list[Any]:
        query = select(EventRow).where(EventRow.flow_uuid == flow_uuid).order_by(EventRow.id.desc()).limit(limit)
        rows = list(session.scalars(query))
        for row in rows:
            session.expunge(row)
        return rows[::-1]

    table = Table(title=f"last {limit} events", title_justify="left")
    for col in ("at", "epoch", "what", "transition", "by"):
        table.add_column(col)
    for e in backend.run(read, readonly=True):
        what = e.atom_name or "(flow)"
        table.add_row(f"{e.at:%H:%M:%S.%f}"[:-3], str(e.epoch), f"{e.kind} {what}",
                      f"{e.old_state or ''} → {e.new_state or ''}", e.worker or "")
    out.print(table)


__all__ = ["ago", "brief", "print_events", "print_view", "view_json"]
