"""Publishing ready work as Celery canvas.

A run of atoms in sequence (each the only successor of the one before, with no
decider in between) goes out as a ``chain`` of at most ``chain_max`` immutable
signatures, so broker bytes per atom stay bounded; independent ready runs go
out together as a ``group``. Joins are not Celery chords: they are counted in
the logbook (see :mod:`celeryflow.runtime.logbook`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import chain, group
from celery.canvas import Signature

from celeryflow.runtime.logbook import EXECUTE, REVERT, Dispatch

if TYPE_CHECKING:
    from celery import Celery

    from celeryflow.compiler import Compilation

LOG = logging.getLogger(__name__)

EXECUTE_TASK = "celeryflow.execute"
REVERT_TASK = "celeryflow.revert"
#: Redis commands per pipelined round trip when a dispatch sends many messages
PUBLISH_BATCH = 200


def signature(app: Celery, dispatch: Dispatch, atom: str, mode: str, backend_key: str,
              comp: Compilation | None = None) -> Signature:
    task = EXECUTE_TASK if mode == EXECUTE else REVERT_TASK
    verb = "" if mode == EXECUTE else " (revert)"
    compiled = comp.atoms.get(atom) if comp is not None else None
    # the atom's Celery options (queue, time limits, ...), compiled into the stored compilation:
    # every dispatch, the sweep's included, carries them
    options = (compiled.options if mode == EXECUTE else compiled.revert_options) if compiled else {}
    return app.signature(
        task,
        args=(dispatch.flow_uuid, atom, dispatch.epoch, backend_key),
        immutable=True,
        shadow=f"celeryflow: {dispatch.flow_name} / {atom}{verb}",
        # Flower shows argsrepr: ids only, never store values.
        argsrepr=f"(flow={dispatch.flow_uuid}, atom={atom!r}, epoch={dispatch.epoch})",
        kwargsrepr="{}",
        **options,
    )


def runs(comp: Compilation, ready: list[str], chain_max: int) -> list[list[str]]:
    """Group ready atoms into sequential runs to send as chains."""
    out: list[list[str]] = []
    for name in ready:
        run = [name]
        current = comp.atoms[name]
        while len(run) < chain_max and len(current.succs) == 1:
            nxt = comp.atoms[current.succs[0]]
            if len(nxt.preds) != 1 or nxt.deciders or nxt.kind != "task" or current.kind != "task":
                break
            run.append(nxt.name)
            current = nxt
        out.append(run)
    return out


def publish(
    app: Celery, comp: Compilation, dispatch: Dispatch, backend_key: str, chain_max: int = 16, **options: Any
) -> None:
    """Send the dispatch's messages. Called only after the logbook commit."""
    if not dispatch:
        return
    sigs: list[Signature] = []
    for run in runs(comp, dispatch.execute, chain_max):
        links = [signature(app, dispatch, name, EXECUTE, backend_key, comp) for name in run]
        sigs.append(links[0] if len(links) == 1 else chain(*links))
    sigs.extend(signature(app, dispatch, name, REVERT, backend_key, comp) for name in dispatch.revert)
    if dispatch.countdown:
        options["countdown"] = dispatch.countdown
    canvas: Signature = sigs[0] if len(sigs) == 1 else group(sigs)
    if len(sigs) == 1 or "producer" in options:
        canvas.apply_async(**options)
        return
    # Many messages: one producer, its commands pipelined (kombu's publish batch: one Redis
    # round trip per PUBLISH_BATCH commands instead of one per message; other transports
    # publish one by one as before). Unflushed messages of a failed batch are the sweep's
    # lost messages, like any publish that fails after the commit.
    with app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH):
        canvas.apply_async(producer=producer, **options)


def chained_next(request: Any) -> str | None:
    """The atom the Celery chain of the current request will run next, if any."""
    chain_ = getattr(request, "chain", None)
    if not chain_:
        return None
    nxt = chain_[-1]
    try:
        if nxt.get("task") == EXECUTE_TASK:
            return str(nxt["args"][1])
    except (AttributeError, KeyError, IndexError, TypeError):
        pass
    return None
