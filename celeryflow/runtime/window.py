"""The dispatch window: queue the atoms it held back once a flow's in-flight count falls.

At most ``window`` atoms of a flow (``CELERYFLOW_DISPATCH_WINDOW``) are queued or running.
Whatever makes atoms ready (a start, a finishing atom, a retry round, a compensation wave)
queues only the window's room (:func:`celeryflow.runtime.logbook.admit`) and counts the rest
in ``flows.held``; :func:`refill` queues them, from :func:`celeryflow.runtime.logbook.settle`,
in the transaction of the atom whose end brought the in-flight count down to half the window.
Held atoms carry no mark, so a re-drive (``control.start``) recomputes them from the atoms
themselves: a held execution is a PENDING atom meant to execute whose join counter is 0 and
that is not queued; a held revert is an executed atom of the current compensation plan (the
flow's, or a retrying scope's) meant to be reverted, with nothing left to revert before it
(``rwaiting`` 0), not queued and not yet claimed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from celeryflow import states
from celeryflow.persistence.rows import FlowState
from celeryflow.persistence.tables import AtomRow
from celeryflow.runtime import bookkeeping, scopes
from celeryflow.runtime.logbook import Dispatch, Events, queue_atoms
from celeryflow.runtime.settings import DEFAULT_DISPATCH_WINDOW
from celeryflow.scheduler import admission
from celeryflow.scheduler.retry_scopes import HELD_REVERT

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation

#: states of a revert that is held: executed, not yet claimed for reverting (REVERTING may be in a
#: worker's hands, so a REVERTING atom is never held: callers queue those first)
HELD_REVERT_STATES = HELD_REVERT


def refill(session: Session, flow: FlowState, comp: Compilation, events: Events, dispatch: Dispatch,
           window: int = DEFAULT_DISPATCH_WINDOW) -> None:
    """Queue held atoms once the flow's in-flight count fell to half the window.

    A running flow holds executions (and the reverts of a retry round); a reverting one, reverts.
    """
    want = admission.refill_due(flow.held, flow.outstanding, window, flow.state)
    if not want:
        return
    found = 0
    active = scopes.retrying(flow)
    if flow.state == states.RUNNING:
        stmt = (
            select(AtomRow.name)
            .where(AtomRow.flow_uuid == flow.uuid, AtomRow.state == states.PENDING, AtomRow.waiting <= 0,
                   AtomRow.intention == states.EXECUTE, AtomRow.queued.is_(False))
            .order_by(AtomRow.name)
            .limit(want)
        )
        # Atoms of a scope being retried run in its next attempt: left out of the query, not
        # counted as found (counted, they would use up ``held`` while atoms outside wait forever).
        blocked = {m for c in active for m in scopes.members(comp, c)}
        if blocked:
            stmt = stmt.where(AtomRow.name.not_in(sorted(blocked)))
        ready = list(session.scalars(stmt))
        found = len(ready)
        queue_atoms(session, flow, ready, states.EXECUTE, events)
        dispatch.execute.extend(ready)
    if flow.state == states.REVERTING:
        plans: list[Mapping[str, Any]] = [bookkeeping.revert_plan(flow) or {}]
    else:
        plans = [entry.get("plan") or {} for entry in active.values()]
    if found < want and any(plans):
        reverts = _held_reverts(session, flow, comp, plans, want - found)
        found += len(reverts)
        queue_atoms(session, flow, reverts, states.REVERT, events)
        dispatch.revert.extend(reverts)
    bookkeeping.set_held(flow, admission.held_after_refill(flow.held, want, found))


def _held_reverts(
    session: Session, flow: FlowState, comp: Compilation, plans: Iterable[Mapping[str, Any]], limit: int
) -> list[str]:
    """Up to ``limit`` held reverts of the current plans, latest atoms first."""
    planned = {name for plan in plans for name in plan}
    names = session.scalars(
        select(AtomRow.name).where(
            AtomRow.flow_uuid == flow.uuid, AtomRow.intention == states.REVERT, AtomRow.queued.is_(False),
            AtomRow.rwaiting <= 0, AtomRow.state.in_(HELD_REVERT_STATES),
        )
    )
    # an executed atom outside the plans (what a failed revert depends on) stays unreverted
    return sorted((n for n in names if n in planned), key=lambda n: -comp.atoms[n].index)[:limit]
