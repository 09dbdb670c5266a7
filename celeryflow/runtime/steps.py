"""The transactions a worker runs around one atom: begin, finish, refuse.

Two transactions per atom on the success path: ``begin`` (claim the atom with a
compare-and-set, read its inputs) and ``finish`` (record the outcome, count it
into the joins of its successors, queue what became ready, settle the flow).
User code (deciders, retry controllers' ``on_failure``) runs outside both.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.exceptions import DependencyFailure, MissingDependencies, NotFound
from celeryflow.persistence.backends.base import on_connection
from celeryflow.persistence.tables import AtomRow, db_utcnow, utcnow
from celeryflow.runtime import (
    bookkeeping,
    compensation,
    fastpath,
    fastpath_pg,
    retries,
    scope_decisions,
    scope_rounds,
    scopes,
)
from celeryflow.runtime.args import resolve
from celeryflow.runtime.heartbeat import record_progress as record_progress  # re-exported: workers call it here
from celeryflow.runtime.logbook import (
    EXECUTE,
    DeciderCall,
    Dispatch,
    Events,
    claim_atom,
    claim_details,
    decrement_successors,
    load_atoms,
    load_results,
    queue_ready,
    queue_reverts,
    ready_after,
    record_outcome,
    settle,
)
from celeryflow.runtime.settings import DEFAULT_DISPATCH_WINDOW
from celeryflow.runtime.verdicts import DECIDE, Answers, UserCall, asking, decider_answer, record_own_verdicts
from celeryflow.scheduler import claim as claim_rule
from celeryflow.scheduler.claim import Verdict as Verdict  # re-exported: workers test it
from celeryflow.scheduler.snapshot import FlowSnap

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation
    from celeryflow.persistence.backends.base import Backend

LOG = logging.getLogger(__name__)


@dataclass
class Begun:
    verdict: Verdict
    reason: str = ""
    kwargs: dict[str, Any] | None = None
    result: Any = None  # revert: the atom's result (or its Failure dict)
    failure: dict[str, Any] | None = None
    flow_failures: dict[str, Any] | None = None
    flow_name: str = ""
    attempts: int = 0
    history: list[Any] | None = None  # retry controllers: their persisted history
    #: the claim's own fencing token (RUN only): finish, progress and heartbeats must present it
    token: str | None = None
    #: claimed, but its inputs cannot be resolved: the Failure dict to finish it with, unrun
    input_error: dict[str, Any] | None = None


#: what input resolution raises for a flow whose data does not fit (args.resolve)
INPUT_ERRORS = (NotFound, DependencyFailure)


def input_failure(exc: Exception) -> dict[str, Any]:
    """The Failure dict of an input error, re-raisable as the same exception in the caller."""
    from celeryflow.types.failure import Failure

    failure = Failure.from_exception(exc).to_dict()
    if isinstance(exc, MissingDependencies):
        # Its constructor takes (who, requirements), not the message: these args rebuild the
        # same message and keep missing_requirements for whoever catches it.
        failure["exc_args"] = [next(iter(exc.missing_requirements), ""), exc.missing_requirements]
    return failure


def _inputs(
    session: Session, flow_uuid: str, store_json: str | None, comp: Compilation, name: str, revert: bool
) -> dict[str, Any]:
    compiled = comp.atoms[name]
    arg_map = compiled.revert_args if revert else compiled.exec_args
    optional = compiled.revert_optional if revert else compiled.exec_optional
    store = serialization.loads(store_json) or {}
    needed = {compiled.providers[s] for s in arg_map.values() if s in compiled.providers}
    results = load_results(session, flow_uuid, needed)
    save_as = {p: comp.atoms[p].save_as for p in needed}
    return resolve(name, arg_map, optional, compiled.inject, store, compiled.providers, results, save_as)


def begin(
    backend: Backend, comp: Compilation, flow_uuid: str, name: str, epoch: int, mode: str, worker: str,
    task_id: str | None = None,
) -> Begun:
    """Claim ``name`` for execution (mode ``execute``) or compensation (``revert``).

    ``task_id``: the Celery task id of the message (recorded with the claim's event, so the
    flow view links each attempt to its task in Flower).

    A claim gets a fresh token (``Begun.token``, stored on the atom row): the worker id
    names a process, and one process may run several executions of one atom (a thread
    pool, the embedded default, a retry round); only the current claim's token finishes it.
    """
    token = uuid.uuid4().hex

    def txn(session: Session) -> Begun:
        flow = backend.lock_flow(session, flow_uuid, shared=True)
        snap = None if flow is None else FlowSnap.of(flow)
        blocked = flow is not None and mode == EXECUTE and flow.epoch == epoch and flow.state == states.RUNNING \
            and scopes.blocked(comp, flow, name)
        decided = claim_rule.decide(snap, epoch, mode, blocked)
        if decided.verdict is not Verdict.RUN or flow is None:
            return Begun(decided.verdict, decided.reason if flow is not None else
                         f"flow {flow_uuid} is not in the logbook")
        events = Events(flow_uuid, epoch, worker)
        new = decided.new
        if claim_atom(session, flow_uuid, name, decided, worker, token):
            previous = decided.olds[0] if len(decided.olds) == 1 else None
            events.add("atom", previous, new, atom=name, details=claim_details(task_id))
        elif not _own_claim(session, flow_uuid, name, new, token):
            return Begun(Verdict.SKIP, "already claimed or no longer queued (duplicate delivery)")
        events.flush(session)
        try:
            kwargs = _inputs(session, flow_uuid, flow.store, comp, name, revert=(mode != EXECUTE))
        except INPUT_ERRORS as exc:
            # Never raise here: that would roll the claim back and the sweep would resend the
            # message forever. The claim commits and the error is the atom's (revert) failure.
            failed = _claimed(None, flow.name, exc)
            failed.token = token  # the failure is recorded by this claim
            return failed
        begun = Begun(Verdict.RUN, kwargs=kwargs, flow_name=flow.name, token=token)
        if comp.atoms[name].kind == "retry":
            begun.history = scopes.load_history(session, flow_uuid, name)
        if mode != EXECUTE:
            row = load_atoms(session, flow_uuid, [name])[name]
            begun.result = serialization.loads(row.result)
            begun.failure = serialization.loads(row.failure)
            begun.flow_failures = scopes.revert_failures(session, comp, flow, name)
            begun.attempts = row.attempts
        return begun

    if mode != EXECUTE:
        return backend.run(txn)

    if _on_postgresql(backend):
        # one autocommit statement claims and reads (fastpath_pg); anything else: the general txn
        begun = backend.run_autocommit(
            lambda conn: fastpath_pg.begin(conn, comp, flow_uuid, name, epoch, worker, _claimed, token, task_id))
        if begun is fastpath.FALLBACK:
            return backend.run(txn)
        begun.token = token
        return begun

    def fast(conn: Connection) -> Begun:
        begun = fastpath.begin(conn, comp, flow_uuid, name, epoch, worker, _claimed, token, task_id)
        if begun is fastpath.FALLBACK:
            return on_connection(conn, txn)
        begun.token = token
        return begun

    return backend.run_core(fast)


def _on_postgresql(backend: Backend) -> bool:
    engine = getattr(backend, "engine", None)
    return engine is not None and engine.dialect.name == "postgresql"


def _own_claim(session: Session, flow_uuid: str, name: str, state: str, token: str) -> bool:
    """This begin's own claim, committed by an earlier attempt whose outcome was unknown.

    A connection lost during COMMIT (or during PostgreSQL's one-statement claim) makes
    ``backend.run`` try again; the token is this call's, so a row that carries it is ours.
    """
    row = load_atoms(session, flow_uuid, [name]).get(name)
    return row is not None and row.state == state and row.claim_token == token


def _claimed(kwargs: dict[str, Any] | None, flow_name: str, input_error: Exception | None = None) -> Begun:
    if input_error is None:
        return Begun(Verdict.RUN, kwargs=kwargs, flow_name=flow_name)
    LOG.warning("the inputs of an atom of flow %r cannot be resolved; recording it as its failure: %s",
                flow_name, input_error)
    return Begun(Verdict.RUN, flow_name=flow_name, input_error=input_failure(input_error))


def finish(
    backend: Backend,
    comp: Compilation,
    flow_uuid: str,
    name: str,
    epoch: int,
    mode: str,
    worker: str,
    *,
    result: Any = None,
    failure: dict[str, Any] | None = None,
    decide: DeciderCall | None = None,
    controller: scopes.ControllerLookup | None = None,
    window: int = DEFAULT_DISPATCH_WINDOW,
    result_json: str | None = None,
    answers: Answers | None = None,
    token: str | None = None,
) -> Dispatch | None:
    """Record the outcome of ``name``; return what to publish (None: the message was stale).

    User code never runs inside the transaction: ``answers`` are the verdicts the
    worker already asked for (:func:`~celeryflow.runtime.verdicts.decide_links`: the
    deciders on this atom's outgoing links), recorded here; a verdict the transaction
    needs and does not have (a retry controller's ``on_failure``, a decider after an
    IGNORE) is asked through ``decide`` / ``controller`` outside it, and the
    transaction runs again (:func:`~celeryflow.runtime.verdicts.asking`).
    ``controller`` looks up live retry controllers by name; by default the flow is
    rebuilt from the logbook.
    ``result_json``: ``result`` already encoded (the worker encoded it to check its size).
    ``token``: the claim's token (``Begun.token``): the outcome is recorded only while that
    claim is current. Without one (the sweep failing a poison atom it holds, callers driving
    the scheduler by hand) the worker id alone is checked.
    """
    if failure is not None:
        result_json = None
    elif result_json is None:
        result_json = serialization.dumps_value(result, f"result of atom {name!r}")
    failure_json = serialization.dumps(failure) if failure is not None else None
    lookup = controller or _lookup(backend, flow_uuid)

    def answer(call: UserCall) -> Any:
        return ask(call, decide, lookup, flow_uuid)

    def txn(session: Session, known: Answers) -> Dispatch | None:
        flow = backend.lock_flow(session, flow_uuid)
        if flow is None:
            LOG.warning("discarding %s result of %s/%s: the flow is not in the logbook", mode, flow_uuid, name)
            return None
        # A message of an older epoch still records its result if this worker's claim on the atom
        # survived the epoch bump (the CAS below: still RUNNING/REVERTING *by this worker*). A reclaim
        # or resume resets exactly the atoms it fences off, so their late results are discarded there.
        fenced = f" (fenced off: message epoch {epoch}, flow epoch {flow.epoch})" if flow.epoch != epoch else ""
        events = Events(flow_uuid, epoch, worker)
        dispatch = Dispatch(flow_uuid, flow.name, flow.epoch)
        now = utcnow()
        outcome = claim_rule.outcome(mode, failed=failure is not None)
        new = outcome.new
        if not record_outcome(session, flow_uuid, name, outcome, worker, token, result_json, failure_json, now):
            return _replayed(session, flow, name, mode, new, worker, result_json, failure_json, fenced)
        events.add("atom", outcome.old, new, atom=name)
        if mode == EXECUTE:
            bookkeeping.count_left(flow)
            flow.progress_at = db_utcnow()  # liveness: the database's clock
            if failure is None:
                if comp.atoms[name].kind == "retry":
                    scopes.record_value(session, flow_uuid, name, result)
                record_own_verdicts(session, flow_uuid, name, known)
                candidates = decrement_successors(session, flow, comp, [name])
                if flow.state == states.RUNNING and candidates:
                    ready = ready_after(session, flow, comp, candidates, events, known)
                    queue_ready(session, flow, ready, events, dispatch, window)
            else:
                scope_decisions.on_execute_failure(session, flow, comp, name, failure, events, known)
            scope_rounds.after_change(session, flow, comp, name, events, dispatch, window)
        else:
            bookkeeping.count_left(flow)
            flow.progress_at = db_utcnow()
            scope = None
            if flow.state in (states.RUNNING, states.SUSPENDING) and scopes.might_be_handled(flow):
                scope = scopes.handled_scope(comp, scopes.retrying(flow), name)
            if scope is not None:
                scope_rounds.after_revert(session, flow, comp, scope, name, failure, events, dispatch, window)
            elif failure is None:
                ready = compensation.after_reverted(session, flow, comp, name)
                queue_reverts(session, flow, ready, events, dispatch, window)
            else:
                bookkeeping.mark_revert_failed(flow)
        settle(session, flow, comp, events, dispatch, window)
        events.flush(session)
        return dispatch

    if mode != EXECUTE or failure is not None:
        return asking(lambda known: backend.run(lambda session: txn(session, known)), answer, answers)

    def fast(conn: Connection, known: Answers) -> Dispatch | None:
        finish_fast = fastpath_pg.finish if conn.dialect.name == "postgresql" else fastpath.finish
        dispatch = finish_fast(conn, comp, flow_uuid, name, epoch, worker, result_json, window, token)
        return on_connection(conn, lambda session: txn(session, known)) if dispatch is fastpath.FALLBACK else dispatch

    return asking(lambda known: backend.run_core(lambda conn: fast(conn, known)), answer, answers)


def ask(call: UserCall, decide: DeciderCall | None, lookup: scopes.ControllerLookup, flow_uuid: str) -> Any:
    """Run the user code a transaction asked for (outside it): a decider, or a controller's ``on_failure``."""
    if call.kind == DECIDE:
        return decider_answer(decide, call)
    history, kwargs = call.args
    try:
        obj = lookup(call.target)
    except Exception as exc:  # not registered here: the controller cannot decide
        return list(retries.could_not_decide(call.target, flow_uuid, exc))
    return retries.on_failure_verdict(call.target, flow_uuid, obj, history, kwargs)


def _replayed(
    session: Session, flow: Any, name: str, mode: str, new: str, worker: str,
    result_json: str | None, failure_json: str | None, fenced: str,
) -> Dispatch | None:
    """A finish whose CAS lost: its own earlier commit (re-run by ``backend.run``), or a late result.

    A COMMIT can reach the database while the connection dies before the client hears
    back; ``backend.run`` then runs the transaction again. If the atom holds exactly this
    worker's outcome, that was this finish: the atoms it queued are published (again: a
    duplicate message is absorbed by ``begin``'s compare-and-set, like the sweep's resends).
    """
    written = (AtomRow.result, AtomRow.failure) if mode == EXECUTE else (AtomRow.revert_result, AtomRow.revert_failure)
    column = written[0] if failure_json is None else written[1]
    row = session.execute(
        select(AtomRow.state, AtomRow.worker, column).where(AtomRow.flow_uuid == flow.uuid, AtomRow.name == name)
    ).first()
    if row is None or tuple(row) != (new, worker, result_json if failure_json is None else failure_json):
        LOG.warning("discarding late %s result of %s/%s from %s: the atom already moved on%s",
                    mode, flow.uuid, name, worker, fenced)
        return None
    LOG.info("%s of %s/%s was already recorded (its commit landed before the connection died)",
             mode, flow.uuid, name)
    dispatch = Dispatch(flow.uuid, flow.name, flow.epoch)
    queued = select(AtomRow.name, AtomRow.intention).where(AtomRow.flow_uuid == flow.uuid, AtomRow.queued.is_(True))
    for atom, intention in session.execute(queued):
        (dispatch.execute if intention == states.EXECUTE else dispatch.revert).append(atom)
    return dispatch


def refuse(
    backend: Backend, comp: Compilation, flow_uuid: str, name: str, epoch: int, worker: str,
    mode: str | None = None, window: int = DEFAULT_DISPATCH_WINDOW,
) -> Dispatch | None:
    """Take a queued atom the flow no longer wants off the books, and settle the flow.

    With ``mode``, only an atom queued for that (execute: intention EXECUTE, revert:
    REVERT) is taken off: a stray execute message never un-queues a pending revert.
    """

    def txn(session: Session) -> Dispatch | None:
        flow = backend.lock_flow(session, flow_uuid)
        if flow is None or flow.epoch != epoch:
            return None
        where: list[Any] = []
        if mode is not None:
            where.append(AtomRow.intention == (states.EXECUTE if mode == EXECUTE else states.REVERT))
        unqueued = session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow_uuid, AtomRow.name == name, AtomRow.queued.is_(True), *where)
            .values(queued=False)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if unqueued != 1:
            return None
        bookkeeping.count_left(flow)
        events = Events(flow_uuid, epoch, worker)
        dispatch = Dispatch(flow_uuid, flow.name, flow.epoch)
        scope_rounds.after_change(session, flow, comp, name, events, dispatch, window)
        settle(session, flow, comp, events, dispatch, window)
        events.flush(session)
        return dispatch

    return backend.run(txn)


def _lookup(backend: Backend, flow_uuid: str) -> scopes.ControllerLookup:
    def find(name: str) -> Any:
        from celeryflow.runtime import context

        return context.runtime_for(backend, flow_uuid).atom(name)

    return find
