"""Driving a retry round: revert the scope once it is quiet, then run its controller again.

Called with the flow row locked, from the transactions that record an atom's end
(:mod:`celeryflow.runtime.steps`) and from start/resume (:mod:`celeryflow.runtime.control`).
The semantics are in :mod:`celeryflow.runtime.scopes`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from celeryflow import states
from celeryflow.persistence.rows import FlowState
from celeryflow.persistence.tables import AtomRow, db_utcnow
from celeryflow.runtime.bookkeeping import mark_revert_failed, set_retry_scopes
from celeryflow.runtime.logbook import (
    Dispatch,
    Events,
    load_atoms,
    queue_atoms,
    queue_reverts,
    recount,
)
from celeryflow.runtime.scope_decisions import doom
from celeryflow.runtime.scopes import (
    EXECUTED,
    handled_scope,
    in_order,
    load_history,
    members,
    might_be_handled,
    retrying,
    revert_set,
)
from celeryflow.runtime.settings import DEFAULT_DISPATCH_WINDOW
from celeryflow.scheduler import retry_scopes
from celeryflow.scheduler.compensation import first_wave, revertible_now, waiting_counts
from celeryflow.scheduler.snapshot import AtomSnap

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation

LOG = logging.getLogger(__name__)


def after_change(
    session: Session, flow: FlowState, comp: Compilation, name: str, events: Events, dispatch: Dispatch,
    window: int = DEFAULT_DISPATCH_WINDOW,
) -> None:
    """An atom finished, failed or was refused: move its retrying scope on, if it is in one."""
    if not might_be_handled(flow):
        return
    controller = handled_scope(comp, retrying(flow), name)
    if controller is not None:
        advance(session, flow, comp, controller, events, dispatch, window=window)


def advance(
    session: Session,
    flow: FlowState,
    comp: Compilation,
    controller: str,
    events: Events,
    dispatch: Dispatch,
    lost: frozenset[str] | None = frozenset(),
    window: int = DEFAULT_DISPATCH_WINDOW,
) -> None:
    """Drive a retrying scope: wait until quiet, plan and queue its reverts (within the dispatch
    window: the rest are held, ``window.refill``), then re-run it.

    ``lost``: atoms whose RUNNING/REVERTING state no worker holds any more (None: all
    of them, as on resume after the epoch bump); they do not count as in flight.
    """
    active = retrying(flow)
    entry = active.get(controller)
    if entry is None:
        return
    scope = members(comp, controller)
    rows = load_atoms(session, flow.uuid, scope)
    if retry_scopes.round_busy({n: AtomSnap.of(r) for n, r in rows.items()}, entry.get("plan") or {}, lost):
        return
    if flow.state != states.RUNNING:
        return  # suspended (or suspending): control.start re-drives the scope on resume
    from celeryflow.runtime.compensation import fail_maybe_run

    # an execution given up on (reclaimed, resumed) and not run again may have had effects
    remaining = {n for n, r in rows.items() if r.state in EXECUTED} | fail_maybe_run(session, flow, rows.values(),
                                                                                     events)
    if remaining:
        if "plan" in entry:
            # Quiet, the flow is running, yet reverts remain unqueued: re-plan (resume).
            LOG.info("re-planning the reverts of retry scope %s in flow %s", controller, flow.uuid)
        plan = _plan(comp, remaining)
        entry["plan"] = plan
        active[controller] = entry
        set_retry_scopes(flow, active)
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow.uuid, AtomRow.name.in_(list(scope)))
            .values(intention=states.REVERT)
            .execution_options(synchronize_session=False)
        )
        from celeryflow.runtime.compensation import set_counters

        rwaiting = waiting_counts(plan, remaining)
        set_counters(session, flow.uuid, "rwaiting", rwaiting)
        # REVERTING ones (left by a lost worker) first: they are never held (logbook.queue_reverts)
        ready = first_wave(rwaiting, {n: rows[n].state for n in rwaiting}, comp)
        queue_reverts(session, flow, ready, events, dispatch, window)
        return
    complete(session, flow, comp, controller, entry, events, dispatch)


def _plan(comp: Compilation, to_revert: set[str]) -> dict[str, list[str]]:
    from celeryflow.scheduler.compensation import revert_plan

    return revert_plan(comp, to_revert)


def after_revert(
    session: Session,
    flow: FlowState,
    comp: Compilation,
    controller: str,
    name: str,
    failure: dict[str, Any] | None,
    events: Events,
    dispatch: Dispatch,
    window: int = DEFAULT_DISPATCH_WINDOW,
) -> None:
    """A revert inside a retrying scope finished (REVERTED or REVERT_FAILURE recorded)."""
    if failure is not None:
        # Compensation failed: retrying on top of it is unsafe. Compensate the scope and stop.
        mark_revert_failed(flow)
        history = load_history(session, flow.uuid, controller)
        attempt_failures = dict(history[-1][1]) if history and history[-1][1] else {}
        doom(session, flow, comp, events, revert_set(comp, controller), attempt_failures, failed_atom=name)
        return
    entry = retrying(flow).get(controller) or {}
    plan: dict[str, list[str]] = entry.get("plan") or {}
    preds = plan.get(name, [])
    if preds:
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow.uuid, AtomRow.name.in_(preds))
            .values(rwaiting=AtomRow.rwaiting - 1)
            .execution_options(synchronize_session=False)
        )
        if flow.state == states.RUNNING:
            rows = load_atoms(session, flow.uuid, preds)
            ready = [n for n in preds if revertible_now(AtomSnap.of(rows[n]))]
            queue_reverts(session, flow, ready, events, dispatch, window)
    advance(session, flow, comp, controller, events, dispatch, window=window)


def complete(
    session: Session,
    flow: FlowState,
    comp: Compilation,
    controller: str,
    entry: Mapping[str, Any],
    events: Events,
    dispatch: Dispatch,
) -> None:
    """The scope is reverted: reset its members and run the controller again."""
    scope = list(members(comp, controller))
    rows = load_atoms(session, flow.uuid, scope)
    for name in in_order(comp, scope):
        old = rows[name].state
        if old != states.PENDING:
            states.check_atom_transition(old, states.PENDING, f"atom {name!r}")
            events.add("atom", old, states.PENDING, atom=name, details={"reason": f"retry of {controller}"})
    if scope:
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow.uuid, AtomRow.name.in_(scope))
            .values(
                state=states.PENDING, intention=states.EXECUTE, queued=False, result=None, failure=None,
                revert_result=None, revert_failure=None, history=None, progress=0.0, worker=None,
                started_at=None, finished_at=None, heartbeat_at=None, queued_at=None, rwaiting=0, attempts=0,
            )
            .execution_options(synchronize_session=False)
        )
    active = retrying(flow)
    active.pop(controller, None)
    set_retry_scopes(flow, active)
    recount(session, flow, comp, load_atoms(session, flow.uuid))
    countdown = float(entry.get("countdown") or 0.0)
    alone = not dispatch
    queue_atoms(session, flow, [controller], states.EXECUTE, events)
    if countdown > 0 and alone:
        dispatch.countdown = countdown
        # The message is not late until its countdown has passed (the sweep looks at queued_at).
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow.uuid, AtomRow.name == controller)
            .values(queued_at=db_utcnow(countdown))
            .execution_options(synchronize_session=False)
        )
    dispatch.execute.append(controller)


def resume(
    session: Session,
    flow: FlowState,
    comp: Compilation,
    events: Events,
    dispatch: Dispatch,
    lost: frozenset[str] | None = None,
    window: int = DEFAULT_DISPATCH_WINDOW,
) -> None:
    """Re-drive every retrying scope of a RUNNING flow (start/resume, or a reclaim).

    ``lost``: the atoms whose worker is gone (their RUNNING/REVERTING state is void; a
    RUNNING one should have been made FAILURE: it may have had effects). None (start or
    resume after an epoch bump): every atom in hand is lost and nothing is queued.
    """
    if not might_be_handled(flow):
        return
    active = retrying(flow)
    for entry in active.values():
        entry.pop("plan", None)
    set_retry_scopes(flow, active)
    for controller in list(active):
        advance(session, flow, comp, controller, events, dispatch, lost, window)
