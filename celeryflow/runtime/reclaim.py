"""Granular reclaim of one stalled flow: the transaction the conductor's sweep runs.

:func:`reclaim` locks the flow row, looks at its atoms *under the lock* and,
only if the flow is still stalled, acts. Two conductors racing for the same
flow serialize on that row lock; the second one finds the flow already
re-driven (fresh heartbeats, fresh ``queued_at``, a new epoch) and leaves it:
each stalled flow is re-dispatched once.

What it does, by case (``T`` = ``heartbeat_timeout``):

* **Orphaned atoms** (RUNNING/REVERTING, not queued, heartbeat older than
  ``T``: the worker died, or is partitioned away). The flow's epoch is bumped
  (the fencing token: every message still on the broker for this flow is
  refused from now on), and *only those atoms* are reset: an execution goes
  back to PENDING and is queued again (at-least-once), a revert is queued
  again, an execution caught in a compensating flow becomes FAILURE (it may
  have had effects: it is compensated). Atoms running healthily elsewhere are
  left alone; their results are still accepted because their claim on the
  atom row survives (see :func:`celeryflow.runtime.steps.finish`). Everything
  still queued is published again under the new epoch.
* **Poison atoms**: an orphaned atom whose worker has now died
  ``max_deliveries`` times (counted in the atom's ``lost_execute``/``lost_revert``) is
  not run again; after the commit the caller records its failure
  (:class:`~celeryflow.exceptions.WorkerLost`) through the ordinary
  :func:`~celeryflow.runtime.steps.finish` path, so the flow is compensated.
* **Lost messages** (queued atoms whose message never reached a worker: the
  broker lost its queues, a publish failed after the commit, the submitter
  died between commit and publish), recognized as: the flow made no progress
  for ``T`` and atoms have been queued for longer than ``T``. Their messages
  are sent again with the *same* epoch, no reset: if the original was only
  slow (a backlog), the duplicate is absorbed by the compare-and-set in
  ``begin`` (the first delivery claims the atom, the second finds it no
  longer queued). Resends of a flow that still makes no progress back off
  exponentially (T, 2T, 4T, then every 8T).
* **Stuck flows**: RUNNING/REVERTING/SUSPENDING with nothing queued and
  nothing running for ``T`` (e.g. a compensation that was never started). A
  SUSPENDING flow is settled (SUSPENDED). Otherwise the flow is claimed (its
  progress clock restarted, so no other sweep takes it) and the caller
  re-drives it with :func:`redrive`, i.e. ``control.start()``: new epoch, join
  counters recounted, ready atoms or ready reverts (retry scopes included)
  queued, or the flow settled.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.exceptions import WorkerLost
from celeryflow.persistence.rows import AtomState, FlowState
from celeryflow.runtime import bookkeeping, control, scopes
from celeryflow.runtime.logbook import (
    EXECUTE,
    REVERT,
    DeciderCall,
    Dispatch,
    Events,
    load_atoms,
    queue_atoms,
    settle,
)
from celeryflow.runtime.settings import DEFAULT_DISPATCH_WINDOW
from celeryflow.scheduler import liveness, recovery
from celeryflow.scheduler.liveness import ACTIVE as ACTIVE  # re-exported: the sweep's queries use them
from celeryflow.scheduler.liveness import IN_HAND as IN_HAND
from celeryflow.scheduler.snapshot import AtomSnap
from celeryflow.types.failure import Failure

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation
    from celeryflow.persistence.backends.base import Backend

LOG = logging.getLogger(__name__)

#: the kind of an event the sweep writes when it re-sends lost messages (no transition)
SWEEP_EVENT = "sweep"


@dataclass
class Poison:
    """An atom to fail with WorkerLost (through ``steps.finish``) once the reclaim committed."""

    name: str
    mode: str  # EXECUTE or REVERT
    worker: str
    deaths: int

    def failure(self, flow_uuid: str, max_deliveries: int) -> dict[str, Any]:
        what = "execution" if self.mode == EXECUTE else "revert"
        exc = WorkerLost(
            f"The worker running the {what} of atom {self.name!r} (flow {flow_uuid}) died {self.deaths} "
            f"time(s), the last one {self.worker}; it reached max_deliveries={max_deliveries} "
            "(CELERYFLOW_MAX_DELIVERIES) and is not run again. Find out why it kills its worker "
            "(memory, a native crash, a time limit) before running the flow again"
        )
        return Failure.from_exception(exc).to_dict()


@dataclass
class Outcome:
    """What :func:`reclaim` did to one flow."""

    flow_uuid: str
    action: str = "none"  # none | reclaimed | resent | redriven
    reason: str = ""
    epoch: int = 0
    dispatch: Dispatch | None = None
    reset: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    #: claimed as stuck: the caller must call :func:`redrive` (a separate transaction)
    start: bool = False


def _resend_wait(flow: FlowState, timeout: float) -> tuple[float, int]:
    """Seconds a flow's queued atoms must have waited before a resend, and the resend count."""
    count = int(flow.resends or 0)
    if flow.resend_progress_at != flow.progress_at:
        count = 0  # the flow progressed since the last resend: start over
    # a retry controller re-dispatched with a countdown is not late before its countdown is over
    delayed = max((float(v.get("countdown") or 0.0) for v in scopes.retrying(flow).values()), default=0.0)
    return liveness.resend_wait(timeout, count, delayed), count


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _bump_lost(row: AtomState, mode: str) -> int:
    """Count one more worker death in ``mode`` (EXECUTE or REVERT); return the count."""
    if mode == EXECUTE:
        row.lost_execute = int(row.lost_execute or 0) + 1
        return row.lost_execute
    row.lost_revert = int(row.lost_revert or 0) + 1
    return row.lost_revert


def reclaim(
    backend: Backend,
    comp: Compilation,
    flow_uuid: str,
    *,
    now: dt.datetime,
    heartbeat_timeout: float,
    max_deliveries: int,
    owner: str,
    decide: DeciderCall | None = None,
    stale_atoms: bool = True,
    window: int = DEFAULT_DISPATCH_WINDOW,
) -> Outcome:
    """Look at one flow under its row lock and re-drive it if it is stalled (one transaction).

    Args:
        now: the sweep's clock (naive UTC, like the logbook's timestamps).
        heartbeat_timeout: seconds without a heartbeat (or progress) before something counts as lost.
        max_deliveries: worker deaths after which an atom is failed instead of run again.
        owner: who reclaims (recorded as the flow's owner and in the events).
        decide: unused (kept for callers); :func:`redrive` takes it.
        stale_atoms: look at heartbeats (False right after a logbook outage, when every
            heartbeat is old because nobody could write).
        window: the dispatch window the refill after a reclaim keeps to.

    Returns:
        What was done; ``outcome.dispatch`` must be published after this returns, and
        each ``outcome.poison`` atom's failure recorded with ``steps.finish``.
    """
    def txn(session: Session) -> Outcome:
        out = Outcome(flow_uuid)
        flow = backend.lock_flow(session, flow_uuid)
        if flow is None or flow.state not in ACTIVE:
            out.reason = "not active"
            return out
        out.epoch = flow.epoch
        rows = load_atoms(session, flow_uuid)
        wait, resends = _resend_wait(flow, heartbeat_timeout)
        found = liveness.sweep_case([AtomSnap.of(r) for r in rows.values()], flow.progress_at, now,
                                    heartbeat_timeout, wait, stale_atoms=stale_atoms)
        if found.case is liveness.Case.ORPHANED:
            _reclaim_stale(session, flow, comp, rows, [rows[n] for n in found.stale],
                           [rows[n] for n in found.running], owner, now, max_deliveries, out, window)
        elif found.case is liveness.Case.LOST:
            _resend(session, flow, [rows[n] for n in found.lost], resends, now, owner, out)
        elif found.case is liveness.Case.STUCK:
            _redrive(session, flow, comp, rows, owner, now, out)
        else:
            out.reason = "healthy"
        return out

    return backend.run(txn)


def _claim(flow: FlowState, owner: str) -> Events:
    """Bump the flow's epoch (the fencing token): messages of older epochs are refused from now on."""
    flow.epoch += 1
    flow.owner = owner
    return Events(flow.uuid, flow.epoch, owner)


def _reclaim_stale(
    session: Session,
    flow: FlowState,
    comp: Compilation,
    rows: dict[str, AtomState],
    stale: list[AtomState],
    running: list[AtomState],
    owner: str,
    now: dt.datetime,
    max_deliveries: int,
    out: Outcome,
    window: int = DEFAULT_DISPATCH_WINDOW,
) -> None:
    old_epoch = flow.epoch
    events = _claim(flow, owner)
    dispatch = Dispatch(flow.uuid, flow.name, flow.epoch)
    scoped = scopes.retrying(flow)
    requeue_exec: list[str] = []
    requeue_revert: list[str] = []
    for row in stale:
        mode = EXECUTE if row.state == states.RUNNING else REVERT
        deaths = _bump_lost(row, mode)
        details = {
            "reason": "worker lost", "worker": row.worker, "heartbeat_at": _iso(row.heartbeat_at),
            "deaths": deaths, "fenced_epoch": old_epoch,
        }
        compensating = flow.state == states.REVERTING or scopes.handled_scope(comp, scoped, row.name) is not None
        fate = recovery.lost_claim(row.state, compensating, deaths=deaths, max_deliveries=max_deliveries,
                                  has_worker=bool(row.worker))
        if fate.outcome is recovery.Lost.POISON:
            # Leave it in the worker's hands for now (fresh heartbeat: no other sweep takes it);
            # the caller records its failure through steps.finish once this commits.
            row.heartbeat_at = now
            out.poison.append(Poison(row.name, mode, row.worker or "?", deaths))
            events.add("atom", row.state, row.state, atom=row.name, details={**details, "poison": True})
            continue
        if fate.outcome is recovery.Lost.FAIL:
            # Executed (partly?) in a flow (or retry scope) being compensated: it must be reverted.
            failure = Poison(row.name, mode, row.worker or "?", deaths).failure(flow.uuid, max_deliveries)
            states.check_atom_transition(row.state, states.FAILURE, f"atom {row.name!r}")
            row.state = states.FAILURE
            row.failure = serialization.dumps(failure)
            row.finished_at = now
            events.add("atom", states.RUNNING, states.FAILURE, atom=row.name, details=details)
        elif fate.outcome is recovery.Lost.RERUN:
            states.check_atom_transition(row.state, states.PENDING, f"atom {row.name!r}")
            row.state = states.PENDING
            events.add("atom", states.RUNNING, states.PENDING, atom=row.name, details=details)
        else:
            # REVERTING stays REVERTING: begin() claims REVERTING -> REVERTING again.
            events.add("atom", states.REVERTING, states.REVERTING, atom=row.name, details=details)
        again = recovery.requeue_after_loss(fate.outcome, row.intention, flow.state)
        if again == "execute":
            requeue_exec.append(row.name)
        elif again == "revert":
            requeue_revert.append(row.name)
        row.worker = None
        out.reset.append(row.name)
    # Every message of the old epoch is fenced off: what was queued goes out again.
    republish = [r for r in rows.values() if r.queued]
    dispatch.execute.extend(r.name for r in republish if r.intention == states.EXECUTE)
    dispatch.revert.extend(r.name for r in republish if r.intention == states.REVERT)
    bookkeeping.set_in_flight(flow, recovery.in_flight_after_reclaim(len(republish), len(running), len(out.poison)))
    queue_atoms(session, flow, requeue_exec, states.EXECUTE, events)
    dispatch.execute.extend(requeue_exec)
    if requeue_revert:  # a flow, or a retry scope of a RUNNING flow, being compensated
        queue_atoms(session, flow, requeue_revert, states.REVERT, events)
        dispatch.revert.extend(requeue_revert)
    flow.progress_at = now
    settle(session, flow, comp, events, dispatch, window)
    events.flush(session)
    out.action, out.reason, out.epoch, out.dispatch = "reclaimed", "orphaned atoms", flow.epoch, dispatch


def _resend(session: Session, flow: FlowState, lost: list[AtomState], resends: int, now: dt.datetime, owner: str,
            out: Outcome) -> None:
    for row in lost:
        row.queued_at = now
    # the back-off counts resends while the flow makes no progress (the sweep event names who resent)
    flow.resends = resends + 1
    flow.resend_progress_at = flow.progress_at
    dispatch = Dispatch(flow.uuid, flow.name, flow.epoch)
    dispatch.execute.extend(r.name for r in lost if r.intention == states.EXECUTE)
    dispatch.revert.extend(r.name for r in lost if r.intention == states.REVERT)
    out.action, out.reason, out.dispatch = "resent", "lost messages", dispatch
    out.resent = [r.name for r in lost]
    # on the record (the timeline, the resend metric): no state changes, the kind says so
    events = Events(flow.uuid, flow.epoch, owner)
    events.add(SWEEP_EVENT, None, None, details={"action": "resent", "atoms": out.resent, "resends": resends + 1})
    events.flush(session)


def _redrive(
    session: Session,
    flow: FlowState,
    comp: Compilation,
    rows: dict[str, AtomState],
    owner: str,
    now: dt.datetime,
    out: Outcome,
) -> None:
    out.action, out.reason = "redriven", "nothing in flight"
    if flow.state == states.SUSPENDING:
        # nothing runs any more: the suspension is complete
        events = _claim(flow, owner)
        dispatch = Dispatch(flow.uuid, flow.name, flow.epoch)
        bookkeeping.set_in_flight(flow, 0)
        settle(session, flow, comp, events, dispatch)
        events.flush(session)
        out.epoch, out.dispatch = flow.epoch, dispatch
        return
    # Claim it (fresh progress: no other sweep re-drives it for another timeout), then the
    # caller re-drives it with control.start() (see redrive()), which knows retry scopes and
    # compensation plans. If the caller dies in between, the flow is stalled again after T.
    flow.progress_at = now
    flow.owner = owner
    out.start = True


def redrive(backend: Backend, comp: Compilation, flow_uuid: str, owner: str,
            decide: DeciderCall | None = None, window: int = DEFAULT_DISPATCH_WINDOW,
            heartbeat_timeout: float | None = None) -> Dispatch:
    """Re-drive a claimed stuck flow (nothing in flight): ``control.start`` (new epoch, ready work queued)."""
    return control.start(backend, comp, flow_uuid, owner=owner, decide=decide, window=window,
                         heartbeat_timeout=heartbeat_timeout)
