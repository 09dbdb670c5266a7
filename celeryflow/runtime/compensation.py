"""Compensation planning: revert every executed atom once, in reverse dependency order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.exceptions import WorkerLost
from celeryflow.persistence.tables import AtomRow, FlowRow, utcnow
from celeryflow.runtime.logbook import (
    Dispatch,
    Events,
    cas_atom,
    flow_meta,
    load_atoms,
    queue_reverts,
    set_flow_meta,
    set_flow_state,
)
from celeryflow.runtime.settings import DEFAULT_DISPATCH_WINDOW
from celeryflow.types.failure import Failure

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation

#: States of atoms that executed and therefore must be compensated (RETRYING: a retry
#: controller whose subflow was being retried when the flow gave up).
EXECUTED = (states.SUCCESS, states.FAILURE, states.REVERTING, states.RETRYING)


def may_have_run(row: AtomRow) -> bool:
    """A PENDING atom that was claimed for execute and then put back (a reclaim from a dead
    worker, or a resume, resets RUNNING -> PENDING but keeps ``started_at``): it may have run.

    Every full reset (re-run from scratch, ``engine.reset()``, a retry round) clears
    ``started_at``, so the mark only covers the claim of the current attempt.
    """
    return row.state == states.PENDING and row.started_at is not None and not row.queued


def fail_maybe_run(session: Session, flow: FlowRow, rows: Iterable[AtomRow], events: Events) -> set[str]:
    """Record each of ``rows`` that :func:`may_have_run` as FAILURE (WorkerLost), so it is compensated.

    Called when a compensation (of the flow or of a retry scope) is planned: the execution
    that was given up on may have had effects, and it did not run again since. Returns the
    atoms moved to FAILURE (guarded: an atom that moved meanwhile is left alone).
    """
    moved: set[str] = set()
    now = utcnow()
    for row in rows:
        if not may_have_run(row):
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


def revert_plan(comp: Compilation, to_revert: set[str]) -> dict[str, list[str]]:
    """For each atom to revert, the atoms that may only be reverted after it.

    Those are its nearest ancestors that also executed. Atoms in between that
    did not execute (IGNOREd by a decider) are walked through, so ordering holds
    across them.
    """
    plan: dict[str, list[str]] = {}
    for name in to_revert:
        found: list[str] = []
        seen: set[str] = set()
        stack = list(comp.atoms[name].preds)
        while stack:
            pred = stack.pop()
            if pred in seen:
                continue
            seen.add(pred)
            if pred in to_revert:
                found.append(pred)
            else:
                stack.extend(comp.atoms[pred].preds)
        plan[name] = sorted(found, key=lambda n: comp.atoms[n].index)
    return plan


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
    flow: FlowRow,
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
    meta = flow_meta(flow)
    failed_before = bool(meta.get("revert_failed"))
    if failed_before:
        # A revert already failed in this compensation (inside a retry scope): what it
        # depends on stays as it is; compensating under a failed compensation is unsafe.
        for name, row in rows.items():
            if row.state == states.REVERT_FAILURE:
                to_revert -= comp.ancestors(name)
    plan = revert_plan(comp, to_revert)
    rwaiting = {name: 0 for name in to_revert}
    for preds in plan.values():
        for pred in preds:
            rwaiting[pred] += 1
    # Every member now means to be reverted; atoms that never ran stay PENDING.
    session.execute(
        update(AtomRow)
        .where(AtomRow.flow_uuid == flow.uuid, AtomRow.name.in_(list(members)))
        .values(intention=states.REVERT)
        .execution_options(synchronize_session=False)
    )
    set_counters(session, flow.uuid, "rwaiting", rwaiting)
    meta["revert_plan"] = plan
    meta["revert_failed"] = failed_before
    set_flow_meta(flow, meta)
    # REVERTING ones first: a revert retried on request is never held (logbook.queue_reverts)
    ready = sorted((n for n, c in rwaiting.items() if c == 0),
                   key=lambda n: (rows[n].state != states.REVERTING, -comp.atoms[n].index))
    flow.held = 0  # held executions never start now
    queue_reverts(session, flow, ready, events, dispatch, window)
    if not ready:
        set_flow_state(flow, states.FAILURE if failed_before else states.REVERTED, events)


def after_reverted(session: Session, flow: FlowRow, comp: Compilation, name: str) -> list[str]:
    """Count a finished revert into the plan; return the atoms now ready to revert."""
    plan: dict[str, list[str]] = flow_meta(flow).get("revert_plan", {})
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
    return [
        n for n in preds
        if rows[n].rwaiting == 0 and rows[n].state in EXECUTED and not rows[n].queued
    ]
