"""``celeryflow demo``: boot a VM, fail at attach, watch the compensation, then succeed."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from celeryflow import engines, states

STYLE = {
    states.PENDING: "dim",
    states.RUNNING: "bold yellow",
    states.SUCCESS: "green",
    states.FAILURE: "bold red",
    states.REVERTING: "bold magenta",
    states.REVERTED: "cyan",
    states.REVERT_FAILURE: "bold red",
    states.IGNORE: "dim",
}


class AtomBoard:
    """Atom states as a live table, fed by the engine's notifiers in this process."""

    def __init__(self, title: str, atoms: list[str]) -> None:
        self.title = title
        self.rows: dict[str, list[str]] = {name: [states.PENDING, ""] for name in atoms}
        self.flow_state = states.PENDING
        self.log: list[str] = []
        self.started = time.monotonic()

    def on_atom(self, state: str, details: dict[str, Any]) -> None:
        name = details.get("atom_name")
        if name in self.rows:
            self.rows[name][0] = state
            if state == states.SUCCESS:
                self.rows[name][1] = str(details.get("result", ""))
            self.log.append(f"{time.monotonic() - self.started:5.2f}s  {name:<16} {state}")

    def on_flow(self, state: str, details: dict[str, Any]) -> None:
        self.flow_state = state

    def render(self) -> Table:
        table = Table(title=f"{self.title}  [flow: {self.flow_state}]", expand=False)
        table.add_column("atom")
        table.add_column("state")
        table.add_column("result")
        for name, (state, result) in self.rows.items():
            table.add_row(name, f"[{STYLE.get(state, '')}]{state}[/]", result)
        return table


def run_once(console: Console, fail_attach: bool, backend: str | None) -> bool:
    from celeryflow.cli.demo_flow import boot_vm_flow

    engine = engines.load_from_factory(
        boot_vm_flow, store={"vm_name": "demo-vm", "fail_attach": fail_attach}, backend=backend
    )
    board = AtomBoard(
        "boot-vm (attach will fail)" if fail_attach else "boot-vm",
        ["allocate_network", "create_volume", "boot_server", "attach_volume"],
    )
    engine.atom_notifier.register("*", board.on_atom)
    engine.notifier.register("*", board.on_flow)
    ok = True
    # Piped (not a terminal), a Live display only prints its last frame, with no line break
    # after the table's border: print the table once instead, on its own lines.
    live = Live(board.render(), console=console, refresh_per_second=20) if console.is_terminal else None
    with live if live is not None else contextlib.nullcontext():
        if live is not None:
            engine.atom_notifier.register("*", lambda s, d: live.update(board.render()))
            engine.notifier.register("*", lambda s, d: live.update(board.render()))
        try:
            engine.run()
        except Exception as exc:
            ok = False
            board.log.append(f"run() raised {type(exc).__name__}: {exc}")
        if live is not None:
            live.update(board.render())
    if live is None:
        console.print(board.render())
    for line in board.log:
        console.print(f"  {line}")
    console.print(f"flow {engine.flow_uuid}: [bold]{engine.storage.get_flow_state()}[/]\n")
    return ok


@click.command()
@click.option("--backend", default=None, help="Logbook URL (default: the embedded SQLite file).")
def demo(backend: str | None) -> None:
    """Boot a VM: a failure at attach compensates everything in reverse, then a clean run succeeds."""
    console = Console()
    console.print("[bold]1. attach_volume fails: finished steps are reverted in reverse order[/]")
    first = run_once(console, fail_attach=True, backend=backend)
    console.print("[bold]2. the same flow without the failure[/]")
    second = run_once(console, fail_attach=False, backend=backend)
    if first or not second:
        raise SystemExit(1)
