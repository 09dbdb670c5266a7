"""Logbook transitions: the scheduler that lives in the database.

Every function here runs inside one transaction (a ``Session`` from
``backend.run``), holds the flow row lock where it must, and returns a
:class:`Dispatch` describing what to publish *after* commit. Every state write
is a compare-and-set checked against :mod:`celeryflow.states`, guarded by the
flow epoch (the fencing token). Joins are counted in the logbook
(``atoms.waiting``), so they work with any broker and any (or no) result
backend, and a duplicate or stale message finds the state already moved and
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.persistence.rows import AtomState, FlowState
from celeryflow.persistence.rows import load_atoms as load_atoms  # re-exported: the general path loads atoms from here
from celeryflow.persistence.tables import AtomRow, db_utcnow, utcnow
from celeryflow.runtime import bookkeeping, statements
from celeryflow.runtime.settings import DEFAULT_DISPATCH_WINDOW
from celeryflow.runtime.verdicts import Answers, verdicts_for
from celeryflow.runtime.verdicts import DeciderCall as DeciderCall  # re-exported: its callers import it from here
from celeryflow.scheduler import admission, deciders
from celeryflow.scheduler import settle as settle_rule
from celeryflow.scheduler.claim import Claim, Outcome

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation

LOG = logging.getLogger(__name__)

EXECUTE = "execute"
REVERT = "revert"


@dataclass
class Dispatch:
    """Messages to publish once the transaction has committed."""

    flow_uuid: str
    flow_name: str = ""
    epoch: int = 0
    execute: list[str] = field(default_factory=list)
    revert: list[str] = field(default_factory=list)
    countdown: float | None = None

    def __bool__(self) -> bool:
        return bool(self.execute or self.revert)


@dataclass
class Events:
    """Events collected during one transaction, inserted in one statement."""

    flow_uuid: str
    epoch: int
    worker: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        kind: str,
        old: str | None,
        new: str | None,
        atom: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.rows.append(statements.event_row(self.flow_uuid, self.epoch, self.worker, kind, old, new, atom,
                                              serialization.dumps(dict(details)) if details else None))

    def flush(self, session: Session) -> None:
        if self.rows:
            session.execute(statements.ADD_EVENTS, self.rows)
            self.rows = []


#: the key of a claim event's details that names the message's Celery task (not a notification detail)
TASK_ID_KEY: Final = "celery_task_id"


def claim_details(task_id: str | None) -> dict[str, Any] | None:
    """The details of a claim's event: the Celery task that claimed (for links to Flower)."""
    return {TASK_ID_KEY: task_id} if task_id else None


# --------------------------------------------------------------------------- helpers


def set_flow_state(flow: FlowState, new: str, events: Events, **details: Any) -> None:
    """Move a (locked) flow row to ``new`` through the state machine."""
    old: str = flow.state
    if old != new:
        states.check_flow_transition(old, new, f"flow {flow.name!r}")
    flow.state = new
    flow.updated_at = utcnow()
    flow.progress_at = db_utcnow()  # liveness: the database's clock
    if new in states.FLOW_TERMINAL:
        flow.finished_at = flow.updated_at
    events.add("flow", old, new, details=details or None)


def cas_atom(
    session: Session,
    flow_uuid: str,
    name: str,
    old_states: Iterable[str],
    new_state: str,
    events: Events | None,
    *,
    extra_where: Iterable[Any] = (),
    details: Mapping[str, Any] | None = None,
    **values: Any,
) -> bool:
    """Compare-and-set one atom's state; return False when it had already moved."""
    olds = tuple(old_states)
    check_cas(olds, new_state, name)
    stmt = (
        update(AtomRow)
        .where(AtomRow.flow_uuid == flow_uuid, AtomRow.name == name, AtomRow.state.in_(olds), *extra_where)
        .values(state=new_state, **values)
        .execution_options(synchronize_session=False)
    )
    if session.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
        return False
    if events is not None:
        previous = olds[0] if len(olds) == 1 else None
        events.add("atom", previous, new_state, atom=name, details=details)
    return True


def check_cas(olds: Iterable[str], new_state: str, name: str) -> None:
    """Every transition a compare-and-set from ``olds`` may make is allowed (a repeated REVERTING is a re-claim)."""
    for old in olds:
        if old != new_state or new_state in (states.REVERTING,):
            states.check_atom_transition(old, new_state, f"atom {name!r}")


def claim_atom(db: Session | Connection, flow_uuid: str, name: str, claim: Claim, worker: str,
               token: str | None) -> bool:
    """Claim ``name`` as the core's ``claim`` says (:data:`~celeryflow.runtime.statements.CLAIM`).

    ``db``: the general path's session or a fast path's connection; the caller adds the event.
    False: the compare-and-set lost (already claimed, or no longer queued).
    """
    check_cas(claim.olds, claim.new, name)
    done = db.execute(statements.CLAIM, statements.claim_params(claim, flow_uuid, name, worker, token))
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def record_outcome(db: Session | Connection, flow_uuid: str, name: str, outcome: Outcome, worker: str,
                   token: str | None, result_json: str | None, failure_json: str | None, now: Any) -> bool:
    """Record a claim's ``outcome`` (:data:`~celeryflow.runtime.statements.RECORD_CLAIM`).

    Only the claim ``token`` records it (without one, ``worker``'s claim); the caller adds
    the event. False: the claim is no longer current (a late or fenced-off result).
    """
    check_cas((outcome.old,), outcome.new, name)
    stmt = (statements.RECORD if token is None else statements.RECORD_CLAIM)[outcome.mode]
    params = statements.record_params(outcome, flow_uuid, name, worker, token, result_json, failure_json, now)
    return bool(db.execute(stmt, params).rowcount == 1)  # type: ignore[attr-defined]


def load_results(session: Session, flow_uuid: str, names: Iterable[str]) -> dict[str, Any]:
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = session.execute(statements.RESULTS, {"b_flow": flow_uuid, "b_names": wanted})
    return {name: serialization.loads(result) for name, result in rows}


def queue_atoms(session: Session, flow: FlowState, names: list[str], intention: str, events: Events) -> None:
    """Mark atoms as on the broker (one statement) and count them as outstanding."""
    if not names:
        return
    session.execute(statements.QUEUE, {"b_flow": flow.uuid, "b_names": list(names), "b_intention": intention})
    bookkeeping.count_queued(flow, len(names))


def admit(flow: FlowState, ready: list[str], window: int) -> list[str]:
    """Of atoms that just became ready, those to queue now; the rest are held (``flow.held``).

    At most ``window`` atoms of a flow are on the broker or running, whichever wave
    made them ready: a flow that starts with 10,000 ready atoms, or whose one atom
    releases 10,000 successors, publishes only the window's room, and :func:`celeryflow.runtime.window.refill`
    queues the held ones as the in-flight count falls. ``held`` only grows here (a
    start or resume zeroes it first), so atoms held by earlier waves stay counted.
    """
    admitted = admission.admit(ready, flow.outstanding, flow.held, window)
    bookkeeping.set_held(flow, admitted.held)
    return list(admitted.queue)


def queue_ready(
    session: Session, flow: FlowState, names: list[str], events: Events, dispatch: Dispatch, window: int
) -> None:
    """Queue atoms that became ready for execution, as far as the dispatch window has room; hold the rest."""
    ready = admit(flow, names, window)
    queue_atoms(session, flow, ready, states.EXECUTE, events)
    dispatch.execute.extend(ready)


def queue_reverts(
    session: Session, flow: FlowState, names: list[str], events: Events, dispatch: Dispatch, window: int
) -> None:
    """Queue reverts that became ready as far as the dispatch window has room; hold the rest.

    A held revert needs no mark of its own: it is an atom of the current compensation plan
    (``revert_plan``, or a retrying scope's plan) meant to be reverted (intention REVERT),
    with nothing left to revert before it (``rwaiting`` 0), not queued and not yet claimed.
    """
    ready = admit(flow, names, window)
    queue_atoms(session, flow, ready, states.REVERT, events)
    dispatch.revert.extend(ready)


def decode_failures(flow: FlowState) -> dict[str, Any]:
    return dict(serialization.loads(flow.failures) or {})


def flow_meta(flow: FlowState) -> dict[str, Any]:
    return dict(serialization.loads(flow.meta) or {})


# --------------------------------------------------------------------------- execute phase


def ready_after(
    session: Session,
    flow: FlowState,
    comp: Compilation,
    candidates: Iterable[str],
    events: Events,
    answers: Answers | None,
) -> list[str]:
    """Of ``candidates`` (whose waiting just dropped), return those now runnable.

    The verdicts of the deciders on their incoming links are read from the logbook
    (the worker that finished the predecessor recorded them) or taken from
    ``answers``; none is computed here (the flow row is locked): a missing one
    raises :class:`NeedsUserCode`. An atom a decider rejects (and what its depth
    covers) ends IGNORE, which counts as done for its successors, so this cascades.
    """
    from celeryflow.runtime import scopes

    ready: list[str] = []
    pending = list(dict.fromkeys(candidates))
    while pending:
        rows = load_atoms(session, flow.uuid, pending)
        pending = []
        for name, row in rows.items():
            if not admission.ready_to_execute(row.waiting, row.state, row.intention, row.queued):
                continue
            if scopes.blocked(comp, flow, name):
                continue  # its retry scope is being reverted: it runs in the next attempt
            compiled = comp.atoms[name]
            ignored: frozenset[str] = frozenset()
            if compiled.deciders:
                decided = deciders.decide(comp, name, verdicts_for(session, flow.uuid, compiled, answers))
                if decided.failure is not None:
                    # The decider's own bug fails the flow (compensated); the transaction commits.
                    _decider_failed(session, flow, comp, events, name, decided.failure)
                    return []
                ignored = decided.ignored
            if ignored:
                pending.extend(ignore_atoms(session, flow, comp, ignored, events))
            else:
                ready.append(name)
    return ready


def _decider_failed(
    session: Session, flow: FlowState, comp: Compilation, events: Events, name: str, failure: dict[str, Any]
) -> None:
    from celeryflow.runtime import scope_decisions

    scope_decisions.doom(session, flow, comp, events, None, {name: failure}, failed_atom=name)


def ignore_atoms(
    session: Session, flow: FlowState, comp: Compilation, names: Iterable[str], events: Events
) -> list[str]:
    """Move PENDING atoms to IGNORE; return successors whose join counter dropped."""
    done: list[str] = []
    for name in sorted(names, key=lambda n: comp.atoms[n].index):
        if cas_atom(
            session, flow.uuid, name, (states.PENDING,), states.IGNORE, events, intention=states.IGNORE,
            queued=False, finished_at=utcnow(),
        ):
            done.append(name)
    return decrement_successors(session, flow, comp, done)


def decrement_successors(session: Session, flow: FlowState, comp: Compilation, done: Iterable[str]) -> list[str]:
    """Count finished predecessors into their successors' join counters."""
    counts: dict[str, int] = {}
    for name in done:
        for succ in comp.atoms[name].succs:
            counts[succ] = counts.get(succ, 0) + 1
    by_count: dict[int, list[str]] = {}
    for succ, count in counts.items():
        by_count.setdefault(count, []).append(succ)
    for count, names in by_count.items():
        session.execute(statements.COUNT_IN, {"b_flow": flow.uuid, "b_names": names, "b_count": count})
    return list(counts)


def recount(session: Session, flow: FlowState, comp: Compilation, rows: Mapping[str, AtomState]) -> None:
    """Recompute every join counter from the atom states (start, resume, reclaim)."""
    for name, compiled in comp.atoms.items():
        row = rows[name]
        waiting = sum(1 for pred in compiled.preds if rows[pred].state not in states.ATOM_DONE)
        if row.waiting != waiting:
            row.waiting = waiting


def count_unfinished(session: Session, flow_uuid: str) -> int:
    return int(session.scalar(statements.UNFINISHED, {"b_flow": flow_uuid}) or 0)


def settle(
    session: Session, flow: FlowState, comp: Compilation, events: Events, dispatch: Dispatch,
    window: int = DEFAULT_DISPATCH_WINDOW,
) -> None:
    """Refill the dispatch window, and decide what a quiet flow (nothing outstanding) does next."""
    from celeryflow.runtime.window import refill

    refill(session, flow, comp, events, dispatch, window)
    unfinished = None
    if settle_rule.needs_unfinished_count(flow.state, flow.outstanding, bool(dispatch)):
        unfinished = count_unfinished(session, flow.uuid)
    decided = settle_rule.decide(flow.state, flow.outstanding, bool(dispatch), unfinished=unfinished,
                                 revert_planned=flow.revert_plan is not None, revert_failed=bool(flow.revert_failed))
    if decided is settle_rule.Next.QUIET:
        # Nothing in flight yet work remains: only a forced stop gets here.
        LOG.warning("flow %s is quiet with unfinished atoms; the sweep will look at it", flow.uuid)
    elif decided is settle_rule.Next.PLAN_REVERT:
        from celeryflow.runtime.compensation import start_revert

        start_revert(session, flow, comp, events, dispatch, scope=bookkeeping.revert_scope(flow), window=window)
    elif decided in settle_rule.TARGET:
        set_flow_state(flow, settle_rule.TARGET[decided], events)
