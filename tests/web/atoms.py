"""Atoms and flows of the web view tests: gated steps the test finishes one by one, hostile names."""

from __future__ import annotations

import threading
from typing import Any

from celeryflow import registry, task
from celeryflow.patterns import linear_flow

#: gate name -> event; a Gated atom runs until the test sets its event
GATES: dict[str, threading.Event] = {}
_LOCK = threading.Lock()

XSS = "<script>alert(1)</script>"
XSS_ATOM = '<img src=x onerror="alert(2)">'
XSS_MESSAGE = "<b>boom</b><script>alert(3)</script>"


def gate(name: str) -> threading.Event:
    with _LOCK:
        return GATES.setdefault(name, threading.Event())


class Gated(task.Task):
    """Waits for the test to open its gate, then provides its gate's name."""

    def execute(self, gate_name: str) -> str:
        if not gate(gate_name).wait(60):
            raise TimeoutError(f"gate {gate_name} was never opened")
        return gate_name


class Hostile(task.Task):
    def execute(self) -> None:
        raise RuntimeError(XSS_MESSAGE)

    def revert(self, *args: Any, **kwargs: Any) -> None:
        pass


def finished(factory: Any, url: str, store: dict[str, Any] | None = None) -> str:
    """Run a registered factory's flow to its end on the embedded worker (a failure is expected too)."""
    from celeryflow import engines

    engine = engines.load_from_factory(factory, store=store, backend=url)
    try:
        engine.run(timeout=30)
    except Exception:  # REVERTED / FAILURE flows are what some tests want
        pass
    return str(engine.flow_uuid)


@registry.register
def gated_flow(prefix: str, steps: int = 3) -> linear_flow.Flow:
    """``steps`` gated atoms in a row, gates named ``<prefix>-1`` ... ``<prefix>-<steps>``."""
    flow = linear_flow.Flow("gated")
    for i in range(1, steps + 1):
        flow.add(Gated(f"step{i}", inject={"gate_name": f"{prefix}-{i}"}))
    return flow


@registry.register
def hostile_flow() -> linear_flow.Flow:
    return linear_flow.Flow(XSS).add(Hostile(XSS_ATOM))
