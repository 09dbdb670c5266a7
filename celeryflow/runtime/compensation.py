"""Compensation planning: revert every executed atom once, in reverse dependency order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.exceptions import WorkerLost
from celeryflow.persistence.rows import AtomState, FlowState
from celeryflow.persistence.tables import AtomRow, utcnow
from celeryflow.runtime import bookkeeping
from celeryflow.runtime.logbook import (
    Dispatch,
    Events,
    cas_atom,
    load_atoms,
    queue_reverts,
    set_flow_state,
)
from celeryflow.runtime.settings import DEFAULT_DISPATCH_WINDOW
from celeryflow.scheduler import settle as settle_rule
from celeryflow.scheduler.compensation import EXECUTED as EXECUTED  # re-exported: the runtime's callers
from celeryflow.scheduler.compensation import first_wave, revert_plan, revertible_now, waiting_counts
from celeryflow.scheduler.compensation import may_have_run as may_have_run
from celeryflow.scheduler.snapshot import AtomSnap
from celeryflow.types.failure import Failure

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation

def fail_maybe_run(session: Session, flow: FlowState, rows: Iterable[AtomState], events: Events) -> set[str]:
    """Record each of ``rows`` that :func:`may_have_run` as FAILURE (WorkerLost), so it is compensated.

    Called when a compensation (of the flow or of a retry scope) is planned: the execution
    that was given up on may have had effects, and it did not run again since. Returns the
    atoms moved to FAILURE (guarded: an atom that moved meanwhile is left alone).
    """
    moved: set[str] = set()
    now = utcnow()
    for row in rows:
        if not may_have_run(AtomSnap.of(row)):
            continue
        exc = WorkerLost(
            f"The execution of atom {row.name!r} (flow {flow.uuid}) was given up on (its worker was lost, "
            "or the flow was resumed) and had not run again when the flow was reverted; it may have had "
            "effects, so it is reverted"
        )
        failure = serialization.dumps(Failure.from_exception(exc).to_dict())
        if cas_atom(
            session, flow.uuid, row.name, (states.PENDING,), states.FAILURE, events,
            extra_where=(AtomRow.started_at.is_not(None), AtomRow.queued.is_(False)),
            details={"reason": "may have run"}, failure=failure, finished_at=now,
        ):
            moved.add(row.name)
    return moved


def set_counters(session: Session, flow_uuid: str, column: str, counts: dict[str, int]) -> None:
    """Write per-atom counters with one UPDATE per distinct value."""
    by_value: dict[int, list[str]] = {}
    for name, value in counts.items():
        by_value.setdefault(value, []).append(name)
    for value, names in by_value.items():
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow_uuid, AtomRow.name.in_(names))
            .values({column: value})
            .execution_options(synchronize_session=False)
        )


def start_revert(
    session: Session,
    flow: FlowState,
    comp: Compilation,
    events: Events,
    dispatch: Dispatch,
    scope: Iterable[str] | None = None,
    window: int = DEFAULT_DISPATCH_WINDOW,
) -> None:
    """Plan and queue the compensation of ``scope`` (default: the whole flow), within the dispatch window.

    Called with the flow row locked and nothing outstanding, so no atom of the
    flow is running and the set of executed atoms is final.
    """
    rows = load_atoms(session, flow.uuid)
    members = set(scope) if scope is not None else set(comp.atoms)
    to_revert = {name for name in members if rows[name].state in EXECUTED}
    to_revert |= fail_maybe_run(session, flow, (rows[name] for name in members), events)
    failed_before = bool(flow.revert_failed)
    if failed_before:
        # A revert already failed in this compensation (inside a retry scope): what it
        # depends on stays as it is; compensating under a failed compensation is unsafe.
        for name, row in rows.items():
            if row.state == states.REVERT_FAILURE:
                to_revert -= comp.ancestors(name)
    plan = revert_plan(comp, to_revert)
    rwaiting = waiting_counts(plan, to_revert)
    # Every member now means to be reverted; atoms that never ran stay PENDING.
    session.execute(
        update(AtomRow)
        .where(AtomRow.flow_uuid == flow.uuid, AtomRow.name.in_(list(members)))
        .values(intention=states.REVERT)
        .execution_options(synchronize_session=False)
    )
    set_counters(session, flow.uuid, "rwaiting", rwaiting)
    bookkeeping.set_revert_plan(flow, plan)
    ready = first_wave(rwaiting, {n: rows[n].state for n in rwaiting}, comp)
    bookkeeping.set_held(flow, 0)  # held executions never start now
    queue_reverts(session, flow, ready, events, dispatch, window)
    ended = settle_rule.after_plan(len(ready), failed_before)
    if ended in settle_rule.TARGET:
        set_flow_state(flow, settle_rule.TARGET[ended], events)


def after_reverted(session: Session, flow: FlowState, comp: Compilation, name: str) -> list[str]:
    """Count a finished revert into the plan; return the atoms now ready to revert."""
    plan = bookkeeping.revert_plan(flow) or {}
    preds = plan.get(name, [])
    if not preds:
        return []
    session.execute(
        update(AtomRow)
        .where(AtomRow.flow_uuid == flow.uuid, AtomRow.name.in_(preds))
        .values(rwaiting=AtomRow.rwaiting - 1)
        .execution_options(synchronize_session=False)
    )
    rows = load_atoms(session, flow.uuid, preds)
    return [n for n in preds if revertible_now(AtomSnap.of(rows[n]))]
