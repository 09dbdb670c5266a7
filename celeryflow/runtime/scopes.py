"""Retry scopes at run time: what a failure inside a retry controller's subflow does.

Called from the logbook transactions of :mod:`celeryflow.runtime.steps` and
:mod:`celeryflow.runtime.control`, with the flow row locked.

When an atom fails, its nearest enclosing controller's ``on_failure(history)``
is consulted (the failure is first added to the controller's current history
entry, persisted in the controller's ``atoms.history`` column). The outcome,
as in TaskFlow's completer:

* RETRY (controller ``C``): the flow stays RUNNING. ``C`` goes RETRYING and is
  recorded in the flow meta under ``"retrying"``. Its members stop starting
  (queued ones are refused, ready ones are not queued); once none of them is
  queued or running the executed members are reverted in reverse dependency
  order (a plan kept in the meta, counted down in ``atoms.rwaiting``); then the
  members return to PENDING and ``C`` is executed again (with an optional
  countdown from ``C.countdown(attempt)``), providing the next value. Atoms
  outside the scope are not disturbed: joins are counted in the logbook, so a
  sibling branch keeps running and its successors wait for the scope's exits.
* REVERT: the enclosing controller is consulted in turn (with the failure
  recorded under ``C``'s name). Without ``defer_reverts`` a parent that decides
  RETRY or REVERT_ALL wins, else only ``C``'s subflow (and what depends on it)
  is reverted; with ``defer_reverts=True`` the parent's resolution is used
  (no parent: the whole flow is reverted).
* REVERT_ALL (or no controller): the whole flow is reverted.

Reverting "only a subflow" uses the flow-level compensation with a scope
(``meta["revert_scope"]``): the flow goes REVERTING (no new atom starts),
atoms running elsewhere finish, then only the scope's executed atoms are
reverted; atoms outside it keep their results; the flow ends REVERTED.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from celeryflow import serialization, states
from celeryflow.exceptions import ExecutionFailure
from celeryflow.persistence.tables import AtomRow, FlowRow, utcnow
from celeryflow.runtime.logbook import (
    Dispatch,
    Events,
    decode_failures,
    flow_meta,
    queue_atoms,
    recount,
    set_flow_meta,
    set_flow_state,
)
from celeryflow.types.failure import Failure

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation

LOG = logging.getLogger(__name__)

#: meta key: {controller name: {"countdown": float, "plan": {atom: [atoms reverted after it]}}}
RETRYING = "retrying"
#: meta key: the atoms a flow-level compensation is restricted to (absent: the whole flow)
REVERT_SCOPE = "revert_scope"

#: States of atoms that executed in a scope and must be reverted before a retry.
EXECUTED = (states.SUCCESS, states.FAILURE, states.REVERTING, states.RETRYING)
_DECISIONS = (states.RETRY, "REVERT", "REVERT_ALL")

#: Look up the live controller object of a retry atom by name.
ControllerLookup = Callable[[str], Any]


# --------------------------------------------------------------------------- small helpers


def retrying(meta: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(meta.get(RETRYING) or {})


def enclosing(comp: Compilation, name: str) -> Iterator[str]:
    """The retry controllers enclosing atom ``name``, nearest first."""
    current = comp.atoms[name].retry
    while current is not None:
        yield current
        current = comp.atoms[current].retry


def handled_scope(comp: Compilation, meta: Mapping[str, Any], name: str) -> str | None:
    """The controller whose scope (being reverted for a retry) contains ``name``, if any."""
    active = meta.get(RETRYING)
    if not active:
        return None
    for controller in enclosing(comp, name):
        if controller in active:
            return controller
    return None


def might_be_handled(flow: FlowRow) -> bool:
    """Cheap pre-check before decoding the meta: is any scope being retried?"""
    return bool(flow.meta) and f'"{RETRYING}"' in (flow.meta or "")


def members(comp: Compilation, controller: str) -> tuple[str, ...]:
    return comp.retries[controller].members


def revert_set(comp: Compilation, controller: str) -> set[str]:
    """What reverting ``controller``'s subflow covers: it, its members, and what depends on them."""
    return {controller, *members(comp, controller), *comp.descendants(controller)}


def fresh_rows(session: Session, flow_uuid: str, names: Iterable[str] | None = None) -> dict[str, AtomRow]:
    """Atom rows re-read from the database (bulk UPDATEs do not refresh loaded objects)."""
    stmt = select(AtomRow).where(AtomRow.flow_uuid == flow_uuid).execution_options(populate_existing=True)
    if names is not None:
        wanted = list(names)
        if not wanted:
            return {}
        stmt = stmt.where(AtomRow.name.in_(wanted))
    return {row.name: row for row in session.scalars(stmt)}


def load_history(session: Session, flow_uuid: str, controller: str) -> list[list[Any]]:
    raw = session.scalar(
        select(AtomRow.history).where(AtomRow.flow_uuid == flow_uuid, AtomRow.name == controller)
    )
    return list(serialization.loads(raw) or [])


def save_history(session: Session, flow_uuid: str, controller: str, history: list[list[Any]]) -> None:
    session.execute(
        update(AtomRow)
        .where(AtomRow.flow_uuid == flow_uuid, AtomRow.name == controller)
        .values(history=serialization.dumps(history, f"retry history of {controller!r}"))
        .execution_options(synchronize_session=False)
    )


def record_value(session: Session, flow_uuid: str, controller: str, value: Any) -> None:
    """A controller succeeded: open a new history entry with the value it provided."""
    history = load_history(session, flow_uuid, controller)
    history.append([value, {}])
    save_history(session, flow_uuid, controller, history)


def record_failure(
    session: Session, flow_uuid: str, controller: str, atom: str, failure: dict[str, Any]
) -> list[list[Any]]:
    """Add ``atom``'s failure to the controller's current attempt; return the history."""
    history = load_history(session, flow_uuid, controller)
    if not history:
        history.append([None, {}])
    history[-1][1] = dict(history[-1][1] or {})
    history[-1][1][atom] = failure
    save_history(session, flow_uuid, controller, history)
    return history


def _options(flow: FlowRow) -> dict[str, Any]:
    return dict(flow_meta(flow).get("options") or {})


# --------------------------------------------------------------------------- resolution


@dataclass
class Resolution:
    """What a failure leads to: RETRY / REVERT a controller's subflow, or REVERT_ALL."""

    kind: str
    controller: str | None = None
    countdown: float = 0.0
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)  # extra: a controller that raised


class Resolver:
    """Consults controllers (TaskFlow's ``Completer._process_atom_failure``)."""

    def __init__(self, session: Session, flow: FlowRow, comp: Compilation, lookup: ControllerLookup) -> None:
        self.session = session
        self.flow = flow
        self.comp = comp
        self.lookup = lookup
        self.defer = bool(_options(flow).get("defer_reverts"))

    def process(self, atom: str, failure: dict[str, Any]) -> Resolution:
        controller = self.comp.atoms[atom].retry
        if controller is None:
            return Resolution("REVERT_ALL")
        history = record_failure(self.session, self.flow.uuid, controller, atom, failure)
        decision, countdown, problem = self.consult(controller, history)
        if problem is not None:
            return Resolution("REVERT_ALL", failures={controller: problem})
        if decision == states.RETRY:
            return Resolution(states.RETRY, controller, countdown)
        if decision == "REVERT":
            parent = self.comp.atoms[controller].retry
            above = self.process(controller, failure)
            if self.defer:
                return above
            if parent is not None and above.kind != "REVERT":
                return above
            return Resolution("REVERT", controller, failures=above.failures)
        return Resolution("REVERT_ALL")

    def consult(self, controller: str, history: list[list[Any]]) -> tuple[str, float, dict[str, Any] | None]:
        from celeryflow.retry import History
        from celeryflow.runtime.steps import _inputs

        try:
            obj = self.lookup(controller)
            kwargs = _inputs(self.session, self.flow.uuid, self.flow.store, self.comp, controller, revert=False)
            hist = History.from_list(history)
            decision = str(obj.on_failure(hist, **kwargs))
            if decision not in _DECISIONS:
                raise ValueError(f"on_failure returned {decision!r}; expected RETRY, REVERT or REVERT_ALL")
            countdown = float(obj.countdown(len(hist))) if decision == states.RETRY else 0.0
            return decision, max(0.0, countdown), None
        except Exception as exc:
            LOG.warning("retry controller %s of flow %s could not decide: %r", controller, self.flow.uuid, exc)
            err = ExecutionFailure(
                f"Retry controller {controller!r} could not decide what to do about a failure "
                f"({type(exc).__name__}: {exc}); the whole flow is reverted",
                exc,
            )
            return "REVERT_ALL", 0.0, Failure.from_exception(err).to_dict()


# --------------------------------------------------------------------------- entry points


def on_execute_failure(
    session: Session,
    flow: FlowRow,
    comp: Compilation,
    name: str,
    failure: dict[str, Any],
    events: Events,
    lookup: ControllerLookup,
) -> None:
    """An atom's execution failed (already recorded FAILURE): decide and start what follows."""
    if flow.state in (states.RUNNING, states.SUSPENDING):
        meta = flow_meta(flow)
        if handled_scope(comp, meta, name) is not None:
            # Its scope is already going down for a retry: just remember the failure.
            nearest = comp.atoms[name].retry
            assert nearest is not None
            record_failure(session, flow.uuid, nearest, name, failure)
            return
        if comp.atoms[name].retry is None:
            doom(session, flow, comp, events, None, {name: failure}, failed_atom=name)
            return
        res = Resolver(session, flow, comp, lookup).process(name, failure)
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
    flow: FlowRow,
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
    meta = flow_meta(flow)
    abandoned = dict(meta.pop(RETRYING, None) or {})
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
        current = meta.get(REVERT_SCOPE)
        if current is None or wanted is None:
            meta.pop(REVERT_SCOPE, None)
        else:
            meta[REVERT_SCOPE] = _ordered(comp, set(current) | wanted)
    else:
        if wanted is None:
            meta.pop(REVERT_SCOPE, None)
        else:
            meta[REVERT_SCOPE] = _ordered(comp, wanted)
        details: dict[str, Any] = {"failed_atom": failed_atom} if failed_atom else {}
        if wanted is not None:
            details["scope"] = True
        set_flow_state(flow, states.REVERTING, events, **details)
    set_flow_meta(flow, meta)


def _ordered(comp: Compilation, names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda n: comp.atoms[n].index)


def begin_retry(
    session: Session,
    flow: FlowRow,
    comp: Compilation,
    controller: str,
    countdown: float,
    events: Events,
    *,
    failed_atom: str,
) -> None:
    """``controller`` decided RETRY: stop its scope, mark it RETRYING (reverts start when quiet)."""
    meta = flow_meta(flow)
    active = retrying(meta)
    inside = set(members(comp, controller))
    for other in list(active):
        if other in inside:  # a nested scope already retrying is subsumed
            del active[other]
    active[controller] = {"countdown": countdown}
    meta[RETRYING] = active
    set_flow_meta(flow, meta)
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


def after_change(
    session: Session, flow: FlowRow, comp: Compilation, name: str, events: Events, dispatch: Dispatch
) -> None:
    """An atom finished, failed or was refused: move its retrying scope on, if it is in one."""
    if not might_be_handled(flow):
        return
    controller = handled_scope(comp, flow_meta(flow), name)
    if controller is not None:
        advance(session, flow, comp, controller, events, dispatch)


def blocked(comp: Compilation, flow: FlowRow, name: str) -> bool:
    """True when ``name`` must not start: its scope is being reverted for a retry."""
    if comp.atoms[name].retry is None or not might_be_handled(flow):
        return False
    return handled_scope(comp, flow_meta(flow), name) is not None


def advance(
    session: Session,
    flow: FlowRow,
    comp: Compilation,
    controller: str,
    events: Events,
    dispatch: Dispatch,
    lost: frozenset[str] | None = frozenset(),
) -> None:
    """Drive a retrying scope: wait until quiet, plan and queue its reverts, then re-run it.

    ``lost``: atoms whose RUNNING/REVERTING state no worker holds any more (None: all
    of them, as on resume after the epoch bump); they do not count as in flight.
    """
    meta = flow_meta(flow)
    active = retrying(meta)
    entry = active.get(controller)
    if entry is None:
        return
    scope = members(comp, controller)
    rows = fresh_rows(session, flow.uuid, scope)
    inflight = any(
        r.queued or (r.state in (states.RUNNING, states.REVERTING) and lost is not None and n not in lost)
        for n, r in rows.items()
    )
    if inflight:
        return
    remaining = {n for n, r in rows.items() if r.state in EXECUTED}
    if flow.state != states.RUNNING:
        return  # suspended (or suspending): control.start re-drives the scope on resume
    if remaining:
        if "plan" in entry:
            # Quiet, the flow is running, yet reverts remain unqueued: re-plan (resume).
            LOG.info("re-planning the reverts of retry scope %s in flow %s", controller, flow.uuid)
        plan = _plan(comp, remaining)
        entry["plan"] = plan
        active[controller] = entry
        meta[RETRYING] = active
        set_flow_meta(flow, meta)
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow.uuid, AtomRow.name.in_(list(scope)))
            .values(intention=states.REVERT)
            .execution_options(synchronize_session=False)
        )
        from celeryflow.runtime.compensation import set_counters

        rwaiting = {n: 0 for n in remaining}
        for preds in plan.values():
            for pred in preds:
                rwaiting[pred] += 1
        set_counters(session, flow.uuid, "rwaiting", rwaiting)
        ready = sorted((n for n, c in rwaiting.items() if c == 0), key=lambda n: -comp.atoms[n].index)
        queue_atoms(session, flow, ready, states.REVERT, events)
        dispatch.revert.extend(ready)
        return
    complete(session, flow, comp, controller, entry, events, dispatch)


def _plan(comp: Compilation, to_revert: set[str]) -> dict[str, list[str]]:
    from celeryflow.runtime.compensation import revert_plan

    return revert_plan(comp, to_revert)


def after_revert(
    session: Session,
    flow: FlowRow,
    comp: Compilation,
    controller: str,
    name: str,
    failure: dict[str, Any] | None,
    events: Events,
    dispatch: Dispatch,
) -> None:
    """A revert inside a retrying scope finished (REVERTED or REVERT_FAILURE recorded)."""
    if failure is not None:
        # Compensation failed: retrying on top of it is unsafe. Compensate the scope and stop.
        meta = flow_meta(flow)
        meta["revert_failed"] = True
        meta.setdefault("revert_failures", {})[name] = failure
        set_flow_meta(flow, meta)
        history = load_history(session, flow.uuid, controller)
        attempt_failures = dict(history[-1][1]) if history and history[-1][1] else {}
        doom(session, flow, comp, events, revert_set(comp, controller), attempt_failures, failed_atom=name)
        return
    entry = retrying(flow_meta(flow)).get(controller) or {}
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
            rows = fresh_rows(session, flow.uuid, preds)
            ready = [n for n in preds if rows[n].rwaiting <= 0 and rows[n].state in EXECUTED and not rows[n].queued]
            queue_atoms(session, flow, ready, states.REVERT, events)
            dispatch.revert.extend(ready)
    advance(session, flow, comp, controller, events, dispatch)


def complete(
    session: Session,
    flow: FlowRow,
    comp: Compilation,
    controller: str,
    entry: Mapping[str, Any],
    events: Events,
    dispatch: Dispatch,
) -> None:
    """The scope is reverted: reset its members and run the controller again."""
    scope = list(members(comp, controller))
    rows = fresh_rows(session, flow.uuid, scope)
    for name in _ordered(comp, scope):
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
    meta = flow_meta(flow)
    active = retrying(meta)
    active.pop(controller, None)
    if active:
        meta[RETRYING] = active
    else:
        meta.pop(RETRYING, None)
    set_flow_meta(flow, meta)
    recount(session, flow, comp, fresh_rows(session, flow.uuid))
    session.flush()
    countdown = float(entry.get("countdown") or 0.0)
    alone = not dispatch
    queue_atoms(session, flow, [controller], states.EXECUTE, events)
    if countdown > 0 and alone:
        dispatch.countdown = countdown
        # The message is not late until its countdown has passed (the sweep looks at queued_at).
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow.uuid, AtomRow.name == controller)
            .values(queued_at=utcnow() + dt.timedelta(seconds=countdown))
            .execution_options(synchronize_session=False)
        )
    dispatch.execute.append(controller)


def resume(
    session: Session,
    flow: FlowRow,
    comp: Compilation,
    events: Events,
    dispatch: Dispatch,
    lost: frozenset[str] | None = None,
) -> None:
    """Re-drive every retrying scope of a RUNNING flow (start/resume, or a reclaim).

    ``lost``: the atoms whose worker is gone (their RUNNING/REVERTING state is void; a
    RUNNING one should have been made FAILURE: it may have had effects). None (start or
    resume after an epoch bump): every atom in hand is lost and nothing is queued.
    """
    if not might_be_handled(flow):
        return
    meta = flow_meta(flow)
    active = retrying(meta)
    for entry in active.values():
        entry.pop("plan", None)
    meta[RETRYING] = active
    set_flow_meta(flow, meta)
    for controller in list(active):
        advance(session, flow, comp, controller, events, dispatch, lost)


def forget(meta: dict[str, Any]) -> None:
    """Drop retry bookkeeping from a flow's meta (re-run from scratch, reset, revert on request)."""
    meta.pop(RETRYING, None)
    meta.pop(REVERT_SCOPE, None)
