"""Flow-level transactions: start/resume, suspend, revert on request, reset (creating a flow: runtime.creation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.exceptions import InvalidState, NotFound
from celeryflow.persistence.rows import FlowState
from celeryflow.persistence.tables import AtomRow, db_now
from celeryflow.runtime import bookkeeping, compensation, scope_rounds, scopes
from celeryflow.runtime.creation import COPY_THRESHOLD as COPY_THRESHOLD  # re-exported
from celeryflow.runtime.creation import create_flow as create_flow  # re-exported: engines call it here
from celeryflow.runtime.logbook import (
    DeciderCall,
    Dispatch,
    Events,
    admit,
    load_atoms,
    queue_atoms,
    queue_reverts,
    ready_after,
    recount,
    set_flow_state,
    settle,
)
from celeryflow.runtime.settings import DEFAULT_DISPATCH_WINDOW, Settings
from celeryflow.runtime.verdicts import Answers, asking, decider_answer
from celeryflow.scheduler import compensation as core_compensation
from celeryflow.scheduler import liveness, recovery
from celeryflow.scheduler.liveness import claim_is_fresh as claim_is_fresh  # re-exported: tests import it here
from celeryflow.scheduler.snapshot import AtomSnap

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation
    from celeryflow.persistence.backends.base import Backend


def _live_claims(session: Session, flow_uuid: str, heartbeat_timeout: float) -> set[str]:
    """Atoms in a worker's hands (RUNNING/REVERTING, not waiting for a message) whose heartbeat is fresh."""
    now = db_now(session)
    rows = session.execute(
        select(AtomRow.name, AtomRow.heartbeat_at).where(
            AtomRow.flow_uuid == flow_uuid, AtomRow.state.in_(liveness.IN_HAND), AtomRow.queued.is_(False)
        )
    )
    return {name for name, beat in rows if claim_is_fresh(beat, heartbeat_timeout, now)}


def _locked(backend: Backend, session: Session, flow_uuid: str) -> FlowState:
    flow = backend.lock_flow(session, flow_uuid)
    if flow is None:
        raise NotFound(f"Flow {flow_uuid} is not in the logbook {backend!r}; check the id and the backend URL")
    return flow


def _reset_atoms(session: Session, flow_uuid: str) -> None:
    session.execute(
        update(AtomRow)
        .where(AtomRow.flow_uuid == flow_uuid)
        .values(
            state=states.PENDING, intention=states.EXECUTE, queued=False, result=None, failure=None,
            revert_result=None, revert_failure=None, history=None, progress=0.0, worker=None,
            started_at=None, finished_at=None, heartbeat_at=None, queued_at=None, rwaiting=0, attempts=0,
            # the scheduler's bookkeeping of the forgotten run: worker deaths counted towards
            # poison, recorded decider and retry-controller verdicts, the last claim
            lost_execute=0, lost_revert=0, verdicts=None, on_failure=None, claim_token=None,
        )
        .execution_options(synchronize_session=False)
    )


def start(
    backend: Backend,
    comp: Compilation,
    flow_uuid: str,
    *,
    store_updates: Mapping[str, Any] | None = None,
    owner: str | None = None,
    decide: DeciderCall | None = None,
    window: int = DEFAULT_DISPATCH_WINDOW,
    heartbeat_timeout: float | None = None,
) -> Dispatch:
    """Run, resume or re-drive a flow: bump the epoch and queue whatever is ready.

    At most ``window`` atoms are queued; the other ready ones are held in the
    logbook and queued as the flow's in-flight count falls (``window.refill``).

    * PENDING / SUSPENDED / REVERTED (re-run from scratch) -> RUNNING.
    * RUNNING / REVERTING (the driver died, or a reclaim): atoms left RUNNING
      whose heartbeat is stale (older than ``heartbeat_timeout``, default the
      setting) run again from the start (at-least-once), stale REVERTING ones are
      reverted again; atoms whose worker still heartbeats keep their claim and
      count as outstanding (their results are recorded), so nothing runs twice at
      once. Messages of the old epoch are fenced off and what was queued is sent again.
    * SUCCESS / FAILURE: nothing to do.
    """
    timeout = Settings.from_sources().heartbeat_timeout if heartbeat_timeout is None else heartbeat_timeout

    def txn(session: Session, known: Answers) -> Dispatch:
        flow = _locked(backend, session, flow_uuid)
        if store_updates:
            store = serialization.loads(flow.store) or {}
            for key, value in store_updates.items():
                serialization.check_value(value, f"store value {key!r}")
            store.update(store_updates)
            flow.store = serialization.dumps(store, f"store of flow {flow.name!r}")
        dispatch = Dispatch(flow_uuid, flow.name)
        action = recovery.start_action(flow.state, flow.epoch, flow.outstanding)
        if action is recovery.Start.NOTHING:
            dispatch.epoch = flow.epoch
            return dispatch
        flow.epoch += 1
        if owner is not None:
            flow.owner = owner
        events = Events(flow_uuid, flow.epoch, owner)
        dispatch.epoch = flow.epoch
        if action is recovery.Start.FIRST:
            first = _first_start(session, flow, comp, events, dispatch, window)
            if first is not None:
                return first
        if action is recovery.Start.FROM_SCRATCH:
            _reset_atoms(session, flow_uuid)
            bookkeeping.forget_compensation(flow)
            bookkeeping.forget_retries(flow)
            flow.failures = None
        # Claims whose worker still heartbeats are kept: re-driving them would run them twice at once.
        live = _live_claims(session, flow_uuid, timeout)
        # Everything queued under the old epoch is fenced off: forget it and requeue.
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow_uuid, AtomRow.queued.is_(True))
            .values(queued=False)
            .execution_options(synchronize_session=False)
        )
        bookkeeping.set_in_flight(flow, len(live), held=0)
        flow = _locked(backend, session, flow_uuid)
        rows = load_atoms(session, flow_uuid)
        # a flow stopped during its compensation (it has a plan) resumes compensating, never running
        reverting = flow.state == states.REVERTING or (
            flow.state == states.SUSPENDED and bookkeeping.revert_plan(flow) is not None)
        scoped = scopes.retrying(flow)
        lost = frozenset(n for n, r in rows.items() if r.state in liveness.IN_HAND and n not in live)
        for row in rows.values():
            if row.state == states.RUNNING and row.name not in live:
                # The worker that ran it is gone (or fenced off): at-least-once, run it again,
                # or, when the flow (or its retry scope) is compensating, treat it as executed
                # and revert it.
                fate = recovery.lost_claim(
                    row.state, reverting or scopes.handled_scope(comp, scoped, row.name) is not None)
                states.check_atom_transition(row.state, fate.state, f"atom {row.name!r}")
                row.state = fate.state
                events.add("atom", states.RUNNING, fate.state, atom=row.name, details={"reason": fate.reason})
        if reverting:
            if flow.state != states.REVERTING:
                set_flow_state(flow, states.REVERTING, events, resumed=True)
            plan = bookkeeping.revert_plan(flow)
            if plan is None:
                if not live:  # else: planned by settle() once the live claims have ended
                    compensation.start_revert(session, flow, comp, events, dispatch,
                                              scope=bookkeeping.revert_scope(flow), window=window)
            else:
                # what a failed revert depends on stays unreverted (unsafe under a failed compensation)
                blocked = core_compensation.under_failed_reverts(
                    plan, (n for n, r in rows.items() if r.state == states.REVERT_FAILURE))
                pending = {
                    n for n, r in rows.items() if n in plan and r.state in compensation.EXECUTED and n not in blocked
                }
                counts = core_compensation.waiting_counts(plan, pending)
                compensation.set_counters(session, flow_uuid, "rwaiting", counts)
                # live claims (a revert still running in a worker that heartbeats) are not queued again
                ready = core_compensation.first_wave(
                    {n: c for n, c in counts.items() if n not in live}, {n: rows[n].state for n in pending}, comp)
                queue_reverts(session, flow, ready, events, dispatch, window)
        else:
            if flow.state != states.RUNNING:
                set_flow_state(flow, states.RUNNING, events)
            recount(session, flow, comp, rows)
            # Retry scopes that were being reverted when the flow stopped go on from where they were.
            scope_rounds.resume(session, flow, comp, events, dispatch, lost if live else None, window=window)
            # A controller left RETRYING between two rounds (its round reverted and reset, its next
            # attempt's message refused by a suspend) runs that attempt now, unless its scope is
            # still being reverted (scope_rounds.resume goes on with that) or resume queued it.
            still_reverting = scopes.retrying(flow)
            candidates = [
                n for n, r in rows.items()
                if r.intention == states.EXECUTE and r.waiting == 0 and n not in dispatch.execute and (
                    r.state == states.PENDING or (r.state == states.RETRYING and n not in still_reverting))
            ]
            # the controller passed its deciders in an earlier round: ready_after takes PENDING atoms
            next_rounds = [n for n in candidates if rows[n].state == states.RETRYING
                           and not scopes.blocked(comp, flow, n)]
            fresh = [n for n in candidates if rows[n].state == states.PENDING]
            ready = admit(flow, next_rounds + ready_after(session, flow, comp, fresh, events, known), window)
            queue_atoms(session, flow, ready, states.EXECUTE, events)
            dispatch.execute.extend(ready)
        settle(session, flow, comp, events, dispatch, window)
        events.flush(session)
        return dispatch

    # deciders are asked outside the transaction, which then runs again with their verdicts
    return asking(lambda known: backend.run(lambda session: txn(session, known)),
                  lambda call: decider_answer(decide, call))


def _first_start(
    session: Session, flow: FlowState, comp: Compilation, events: Events, dispatch: Dispatch, window: int
) -> Dispatch | None:
    """A flow's very first start, without reading its atoms back: nothing ran, nothing is queued,
    and the join counters are as ``create_flow`` wrote them, so the ready atoms are the sources.

    Returns None when a source has a decider (the general path evaluates it).
    """
    sources = list(comp.sources())
    if any(comp.atoms[name].deciders for name in sources):
        return None
    set_flow_state(flow, states.RUNNING, events)
    ready = admit(flow, sources, window)
    queue_atoms(session, flow, ready, states.EXECUTE, events)
    dispatch.execute.extend(ready)
    settle(session, flow, comp, events, dispatch, window)
    events.flush(session)
    return dispatch


def suspend(backend: Backend, comp: Compilation, flow_uuid: str) -> str:
    """Stop starting atoms; the flow is SUSPENDED once the running ones finish. Returns the new state."""

    def txn(session: Session) -> str:
        flow = _locked(backend, session, flow_uuid)
        events = Events(flow_uuid, flow.epoch)
        if flow.state == states.PENDING:
            set_flow_state(flow, states.SUSPENDED, events)
        elif flow.state == states.RUNNING:
            set_flow_state(flow, states.SUSPENDING, events)
            settle(session, flow, comp, events, Dispatch(flow_uuid))
        events.flush(session)
        return flow.state

    return backend.run(txn)


def request_revert(backend: Backend, comp: Compilation, flow_uuid: str, owner: str | None = None) -> Dispatch:
    """Compensate a finished, suspended or stuck flow on request (FlowHandle.revert).

    As on the failure path, nothing is reverted while it may still be executing: the flow
    goes REVERTING at once (nothing new starts), atoms in a worker's hands keep their claim
    and count as outstanding (their results are recorded: the claim survives the epoch
    bump), and the compensation is planned once nothing runs (``settle`` ->
    ``compensation.start_revert``). A dead worker's atom is reclaimed by the sweep, as in
    any compensating flow.
    """

    def txn(session: Session) -> Dispatch:
        flow = _locked(backend, session, flow_uuid)
        if not recovery.revert_requested(flow.state, flow_uuid):
            return Dispatch(flow_uuid, flow.name, flow.epoch)
        events = Events(flow_uuid, flow.epoch + 1, owner)
        flow.epoch += 1
        bookkeeping.forget_compensation(flow)
        bookkeeping.forget_retries(flow)
        # read before the un-queueing below: a queued REVERTING atom waits for a message, it is not in hand
        rows = load_atoms(session, flow_uuid)
        in_hand = [r.name for r in rows.values() if liveness.in_hand(AtomSnap.of(r))]
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow_uuid, AtomRow.queued.is_(True))
            .values(queued=False)
            .execution_options(synchronize_session=False)
        )
        bookkeeping.set_in_flight(flow, len(in_hand), held=0)
        for row in rows.values():
            retried = recovery.on_revert_request(row.state)
            if retried is not None:
                # an operator retries a failed compensation: that revert runs again first,
                # and what it depends on is only reverted after it succeeds
                states.check_atom_transition(row.state, retried, f"atom {row.name!r}")
                events.add("atom", row.state, retried, atom=row.name,
                           details={"reason": "compensation retried on request"})
                row.state = retried
        if flow.state != states.REVERTING:
            set_flow_state(flow, states.REVERTING, events, requested=True)
        dispatch = Dispatch(flow_uuid, flow.name, flow.epoch)
        settle(session, flow, comp, events, dispatch)  # plans the compensation once nothing is in hand
        events.flush(session)
        return dispatch

    return backend.run(txn)


def reset(backend: Backend, flow_uuid: str) -> None:
    """Forget every outcome: the flow and its atoms go back to PENDING (engine.reset())."""

    def txn(session: Session) -> None:
        flow = _locked(backend, session, flow_uuid)
        if flow.state in (states.RUNNING, states.REVERTING, states.SUSPENDING) and flow.outstanding:
            raise InvalidState(f"Flow {flow_uuid} is {flow.state} with atoms in flight; suspend it first")
        events = Events(flow_uuid, flow.epoch + 1)
        flow.epoch += 1
        bookkeeping.set_in_flight(flow, 0, held=0)
        flow.failures = None
        flow.finished_at = None
        bookkeeping.forget_compensation(flow)
        bookkeeping.forget_retries(flow)
        _reset_atoms(session, flow_uuid)
        if flow.state != states.PENDING:
            states.check_flow_transition(flow.state, states.PENDING, f"flow {flow.name!r}")
            events.add("flow", flow.state, states.PENDING)
            flow.state = states.PENDING
        events.flush(session)

    backend.run(txn)
