"""What a failure inside a retry scope leads to: consult the controllers, then retry or compensate.

Called with the flow row locked, from the transaction that records the failure
(:func:`celeryflow.runtime.steps.finish`); the controllers' ``on_failure`` (user code)
is never called here: their verdicts are asked outside the transaction and recorded.
The semantics are in :mod:`celeryflow.runtime.scopes`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.persistence.rows import FlowState
from celeryflow.persistence.tables import AtomRow
from celeryflow.runtime import bookkeeping, retries
from celeryflow.runtime.logbook import Events, decode_failures, flow_meta, set_flow_state
from celeryflow.runtime.scopes import (
    enclosing,
    handled_scope,
    in_order,
    load_history,
    members,
    record_failure,
    retrying,
    revert_set,
)
from celeryflow.runtime.verdicts import ON_FAILURE, Answers, NeedsUserCode, UserCall, digest
from celeryflow.scheduler import retry_scopes
from celeryflow.scheduler.retry_scopes import Resolution, ScopeVerdict

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation

LOG = logging.getLogger(__name__)


def _options(flow: FlowState) -> dict[str, Any]:
    return dict(flow_meta(flow).get("options") or {})


# --------------------------------------------------------------------------- resolution


class Resolver:
    """Consults controllers (TaskFlow's ``Completer._process_atom_failure``)."""

    def __init__(self, session: Session, flow: FlowState, comp: Compilation, answers: Answers | None) -> None:
        self.session = session
        self.flow = flow
        self.comp = comp
        self.answers = answers
        self.defer = bool(_options(flow).get("defer_reverts"))

    def process(self, atom: str, failure: dict[str, Any]) -> Resolution:
        """Resolve ``atom``'s failure (the core's rule), recording it in each controller consulted."""
        chain = list(enclosing(self.comp, atom))
        known: dict[str, ScopeVerdict] = {}
        while True:
            decided = retry_scopes.resolve(atom, chain, known, self.defer)
            if isinstance(decided, Resolution):
                return decided
            history = record_failure(self.session, self.flow.uuid, decided.controller, decided.failed, failure)
            decision, countdown, problem = self.consult(decided.controller, history)
            known[decided.controller] = ScopeVerdict(decision, countdown, problem)

    def consult(self, controller: str, history: list[list[Any]]) -> tuple[str, float, dict[str, Any] | None]:
        """The controller's verdict on ``history``: recorded, or in the answers; never computed here.

        ``on_failure`` is user code and the flow row is locked: a verdict not known yet
        raises :class:`NeedsUserCode`, and the worker asks the controller outside the
        transaction and runs it again (:func:`celeryflow.runtime.verdicts.asking`).
        """
        from celeryflow.runtime.steps import _inputs

        try:
            kwargs = _inputs(self.session, self.flow.uuid, self.flow.store, self.comp, controller, revert=False)
        except Exception as exc:  # its inputs cannot be resolved: no user code to ask
            return retries.could_not_decide(controller, self.flow.uuid, exc)
        recorded_json, started_at = self.session.execute(
            select(AtomRow.on_failure, AtomRow.started_at).where(AtomRow.flow_uuid == self.flow.uuid,
                                                           AtomRow.name == controller)
        ).one()
        # the controller's last start is part of the input: a re-run from scratch, whose history
        # may look the same, asks again instead of reusing the previous run's verdict
        asked = serialization.dumps([history, kwargs, started_at.isoformat() if started_at else None])
        call = UserCall(ON_FAILURE, controller, digest(asked), (history, kwargs))
        recorded = serialization.loads(recorded_json) if recorded_json else None
        if recorded is not None and recorded[0] == call.digest:
            verdict = recorded[1]
        elif self.answers is not None and call.key in self.answers:
            verdict = self.answers[call.key]
            # recorded with the history it answers, before it takes effect
            self.session.execute(
                update(AtomRow)
                .where(AtomRow.flow_uuid == self.flow.uuid, AtomRow.name == controller)
                .values(on_failure=serialization.dumps([call.digest, verdict], f"verdict of {controller!r}"))
                .execution_options(synchronize_session=False)
            )
        else:
            raise NeedsUserCode([call])
        decision, countdown, problem = verdict
        return str(decision), float(countdown), problem


# --------------------------------------------------------------------------- entry points


def on_execute_failure(
    session: Session,
    flow: FlowState,
    comp: Compilation,
    name: str,
    failure: dict[str, Any],
    events: Events,
    answers: Answers | None = None,
) -> None:
    """An atom's execution failed (already recorded FAILURE): decide and start what follows.

    ``answers``: retry controllers' verdicts asked outside the transaction (see :meth:`Resolver.consult`).
    """
    if flow.state in (states.RUNNING, states.SUSPENDING):
        if handled_scope(comp, retrying(flow), name) is not None:
            # Its scope is already going down for a retry: just remember the failure.
            nearest = comp.atoms[name].retry
            assert nearest is not None
            record_failure(session, flow.uuid, nearest, name, failure)
            return
        if comp.atoms[name].retry is None:
            doom(session, flow, comp, events, None, {name: failure}, failed_atom=name)
            return
        res = Resolver(session, flow, comp, answers).process(name, failure)
        if res.kind == states.RETRY:
            assert res.controller is not None
            begin_retry(session, flow, comp, res.controller, res.countdown, events, failed_atom=name)
        elif res.kind == "REVERT":
            assert res.controller is not None
            doom(session, flow, comp, events, revert_set(comp, res.controller), {name: failure, **res.failures},
                 failed_atom=name)
        else:
            doom(session, flow, comp, events, None, {name: failure, **res.failures}, failed_atom=name)
    elif flow.state == states.REVERTING:
        # Already compensating (a failure of an atom that was still running): widen the scope.
        nearest = comp.atoms[name].retry
        doom(session, flow, comp, events, revert_set(comp, nearest) if nearest else None, {name: failure},
             failed_atom=name)
    else:
        failures = decode_failures(flow)
        failures[name] = failure
        flow.failures = serialization.dumps(failures)


def doom(
    session: Session,
    flow: FlowState,
    comp: Compilation,
    events: Events,
    scope: Iterable[str] | None,
    failures: Mapping[str, dict[str, Any]],
    *,
    failed_atom: str | None = None,
) -> None:
    """The flow cannot succeed: compensate ``scope`` (None: everything) once nothing runs.

    Scopes that were being reverted for a retry are abandoned and added to the
    compensation (nothing is left half-reverted).
    """
    recorded = decode_failures(flow)
    recorded.update(failures)
    flow.failures = serialization.dumps(recorded)
    abandoned = retrying(flow)
    bookkeeping.set_retry_scopes(flow, {})
    wanted: set[str] | None = None if scope is None else set(scope)
    if wanted is not None:
        # Scopes half-way through a retry (reverting, or their controller queued to run
        # again) are compensated too: nothing is left half-reverted.
        again = session.scalars(
            select(AtomRow.name).where(AtomRow.flow_uuid == flow.uuid, AtomRow.state == states.RETRYING)
        )
        for controller in {*abandoned, *again}:
            wanted |= revert_set(comp, controller)
    if flow.state == states.REVERTING:
        current = bookkeeping.revert_scope(flow)
        bookkeeping.set_revert_scope(
            flow, None if current is None or wanted is None else in_order(comp, set(current) | wanted))
    else:
        bookkeeping.set_revert_scope(flow, None if wanted is None else in_order(comp, wanted))
        details: dict[str, Any] = {"failed_atom": failed_atom} if failed_atom else {}
        if wanted is not None:
            details["scope"] = True
        set_flow_state(flow, states.REVERTING, events, **details)


def begin_retry(
    session: Session,
    flow: FlowState,
    comp: Compilation,
    controller: str,
    countdown: float,
    events: Events,
    *,
    failed_atom: str,
) -> None:
    """``controller`` decided RETRY: stop its scope, mark it RETRYING (reverts start when quiet)."""
    active = retrying(flow)
    inside = set(members(comp, controller))
    for other in list(active):
        if other in inside:  # a nested scope already retrying is subsumed
            del active[other]
    active[controller] = {"countdown": countdown}
    bookkeeping.set_retry_scopes(flow, active)
    history = load_history(session, flow.uuid, controller)
    from celeryflow.runtime.logbook import cas_atom

    moved = cas_atom(
        session, flow.uuid, controller, (states.SUCCESS,), states.RETRYING, events,
        details={"failed_atom": failed_atom, "attempt": len(history), "countdown": countdown},
        intention=states.RETRY,
    )
    if not moved:
        # A subsumed inner controller may already be RETRYING (never RUNNING here: its scope ran).
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow.uuid, AtomRow.name == controller)
            .values(intention=states.RETRY)
            .execution_options(synchronize_session=False)
        )
