"""The success path of an ordinary atom in SQLAlchemy Core: begin and finish without the ORM.

Nearly every transaction a worker runs is one of two: claim a queued atom of a
running flow (``begin``), or record that it succeeded and queue what became
ready (``finish``). Through the ORM each costs several times its SQL (identity
map, unit of work, statement compilation; see docs/benchmarks.md, *The logbook's
per-atom floor*). Here the same statements are built once, as Core, and run on
the transaction's connection.

The fast path only takes the plain case: the flow is RUNNING at the message's
epoch, no retry scope of the flow is being retried, the atom is a task (not a
retry controller) and no successor has a decider. Everything else returns
:data:`FALLBACK` *before writing anything*, and the caller runs the general
(ORM) transaction on the same connection. The guarantees are the same as the
general path's: every write is a compare-and-set guarded like there, transitions
are checked against :mod:`celeryflow.states`, and the flow row is locked
(``FOR UPDATE``; ``FOR SHARE`` to claim) before anything is read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.engine import Connection

from celeryflow import serialization, states
from celeryflow.exceptions import DependencyFailure, NotFound
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow, db_utcnow, utcnow
from celeryflow.runtime import statements
from celeryflow.runtime.args import resolve
from celeryflow.runtime.logbook import TASK_ID_KEY as TASK_ID_KEY  # re-exported
from celeryflow.runtime.logbook import Dispatch, claim_atom, claim_details, record_outcome
from celeryflow.scheduler import admission
from celeryflow.scheduler import claim as claim_rule
from celeryflow.scheduler import settle as settle_rule

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation

LOG = logging.getLogger(__name__)

#: "this transaction is not the plain case: run the general one" (nothing was written)
FALLBACK: Final = object()
#: off: every transaction takes the general path (the equivalence tests compare the two)
ENABLED = True

_flows = cast(Table, FlowRow.__table__)
_atoms = cast(Table, AtomRow.__table__)
_events = cast(Table, EventRow.__table__)

#: what a finish reads of the flow row (never the store nor the meta: their size is the user's)
_READ_FLOW = select(
    _flows.c.name, _flows.c.state, _flows.c.epoch, _flows.c.outstanding, _flows.c.held, _flows.c.scope_retrying,
).where(_flows.c.uuid == bindparam("b_flow"))
#: what a claim reads: the store too (its inputs)
_READ_FLOW_CLAIM = _READ_FLOW.add_columns(_flows.c.store)
#: dialect name -> (the claim's read, shared lock; the finish's, exclusive); SQLite has no row locks: BEGIN IMMEDIATE
#: already made the transaction the only writer.
_LOCKS: dict[str, tuple[Any, Any]] = {}

_SETTLE_COUNT = (
    update(_flows)
    .where(_flows.c.uuid == bindparam("b_flow"))
    .values(outstanding=bindparam("b_outstanding"), held=bindparam("b_held"), progress_at=db_utcnow())
)
_SUCCEED_FLOW = (
    update(_flows)
    .where(_flows.c.uuid == bindparam("b_flow"), _flows.c.state == states.RUNNING)
    .values(outstanding=0, state=states.SUCCESS, progress_at=db_utcnow(), updated_at=bindparam("b_now"),
            finished_at=bindparam("b_now"))
)


def _locks(conn: Connection) -> tuple[Any, Any]:
    name = conn.dialect.name
    pair = _LOCKS.get(name)
    if pair is None:
        if name == "sqlite":
            pair = (_READ_FLOW_CLAIM, _READ_FLOW)
        else:
            pair = (_READ_FLOW_CLAIM.with_for_update(read=True), _READ_FLOW.with_for_update())
        _LOCKS[name] = pair
    return pair


def _count_in(conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
    """Count a finished atom into its successors' joins; their join state after it, by name."""
    params = {**params, "b_count": 1}
    if conn.dialect.update_returning:  # COUNT_IN_RETURNING: one round trip, not two
        return {row.name: row for row in conn.execute(statements.COUNT_IN_RETURNING, params)}
    conn.execute(statements.COUNT_IN, params)
    return {row.name: row for row in conn.execute(statements.JOIN_STATE, params)}


class Join(NamedTuple):
    """A successor's join state after a predecessor was counted in."""

    waiting: int
    state: str
    intention: str
    queued: bool


def _locked_plain_flow(
    conn: Connection, comp: Compilation, flow_uuid: str, name: str, epoch: int, *, exclusive: bool
) -> Any:
    """The flow row, locked (shared to claim, exclusive to finish), if this is the plain case; else None."""
    if not ENABLED:
        return None
    shared_lock, exclusive_lock = _locks(conn)
    flow = conn.execute(exclusive_lock if exclusive else shared_lock, {"b_flow": flow_uuid}).first()
    plain = flow is not None and claim_rule.is_plain(flow.state, flow.epoch, bool(flow.scope_retrying), epoch,
                                                     comp.atoms[name].kind)
    return flow if plain else None


def begin(
    conn: Connection, comp: Compilation, flow_uuid: str, name: str, epoch: int, worker: str,
    make_begun: Callable[[dict[str, Any] | None, str, Exception | None], Any], token: str | None = None,
    task_id: str | None = None,
) -> Any:
    """Claim a queued task of a running flow and read its inputs; FALLBACK for anything else.

    ``make_begun(kwargs, flow name, input error)``: an input error (args.resolve raising
    NotFound or MissingDependencies) is handed over, not raised, so the claim commits and
    the worker records it as the atom's failure.

    A lost compare-and-set (a duplicate delivery) also falls back: the general
    path then finds the atom already claimed and says why it skips.
    """
    flow = _locked_plain_flow(conn, comp, flow_uuid, name, epoch, exclusive=False)
    if flow is None:
        return FALLBACK
    if not claim_atom(conn, flow_uuid, name, claim_rule.EXECUTE_CLAIM, worker, token):
        return FALLBACK
    details = claim_details(task_id)
    event = statements.event_row(flow_uuid, epoch, worker, "atom", None, states.RUNNING, name,
                                 serialization.dumps(details) if details else None)
    conn.execute(statements.ADD_EVENTS, [event])
    compiled = comp.atoms[name]
    store = serialization.loads(flow.store) or {}
    needed = {compiled.providers[s] for s in compiled.exec_args.values() if s in compiled.providers}
    results: dict[str, Any] = {}
    if needed:
        rows = conn.execute(statements.RESULTS, {"b_flow": flow_uuid, "b_names": sorted(needed)})
        results = {row_name: serialization.loads(text) for row_name, text in rows}
    save_as = {p: comp.atoms[p].save_as for p in needed}
    try:
        kwargs = resolve(name, compiled.exec_args, compiled.exec_optional, compiled.inject, store,
                         compiled.providers, results, save_as)
    except (NotFound, DependencyFailure) as exc:
        # The claim stays: raising would roll it back and the message would be resent forever.
        return make_begun(None, flow.name, exc)
    return make_begun(kwargs, flow.name, None)


def finish(
    conn: Connection, comp: Compilation, flow_uuid: str, name: str, epoch: int, worker: str, result_json: str | None,
    window: int, token: str | None = None,
) -> Any:
    """Record a task's success, count it into its successors' joins, queue the ready ones.

    Returns the :class:`Dispatch` to publish after commit, or FALLBACK (nothing written),
    also when held atoms may be due for the dispatch window (``window.refill``: once
    per half window). Successors beyond the window's room are held, as ``logbook.admit``
    holds them: counted in ``flows.held``, left unqueued for ``window.refill``.
    """
    flow = _locked_plain_flow(conn, comp, flow_uuid, name, epoch, exclusive=True)
    if flow is None:
        return FALLBACK
    successors = list(comp.atoms[name].succs)
    if any(comp.atoms[s].deciders for s in successors) or admission.finish_needs_general_path(
            int(flow.held or 0), flow.outstanding, window):
        return FALLBACK
    now = utcnow()
    base = {"b_flow": flow_uuid, "b_now": now}
    if not record_outcome(conn, flow_uuid, name, claim_rule.EXECUTE_SUCCESS, worker, token, result_json, None, now):
        return FALLBACK  # a late result: the general path logs why it is discarded
    events = [statements.event_row(flow_uuid, epoch, worker, "atom", states.RUNNING, states.SUCCESS, name)]
    dispatch = Dispatch(flow_uuid, flow.name, flow.epoch)
    held = int(flow.held or 0)
    if successors:
        joins = _count_in(conn, {"b_flow": flow_uuid, "b_names": successors})
        admitted = admission.admit_successors(successors, joins, flow.outstanding, held, window)
        held = admitted.held
        if admitted.queue:
            conn.execute(statements.QUEUE, {**base, "b_names": list(admitted.queue),
                                            "b_intention": states.EXECUTE})
            dispatch.execute.extend(admitted.queue)
    outstanding = flow.outstanding - 1 + len(dispatch.execute)
    if settle_success(conn, flow_uuid, flow.name, flow.state, epoch, worker, outstanding, held, now, events):
        return dispatch
    conn.execute(_SETTLE_COUNT, {**base, "b_outstanding": outstanding, "b_held": held})
    conn.execute(statements.ADD_EVENTS, events)
    return dispatch


def settle_success(conn: Connection, flow_uuid: str, flow_name: str, state: str, epoch: int, worker: str,
                   outstanding: int, held: int, now: Any, events: list[dict[str, Any]]) -> bool:
    """Settle a running flow whose in-flight count fell to ``outstanding`` (the scheduler core's settle rule).

    Returns True when it wrote the flow row and ``events`` (the flow is quiet: it succeeded,
    or unfinished atoms are left for the sweep); False: work is in flight, the caller
    writes the counters.
    """
    if not settle_rule.is_quiet(outstanding, False):
        return False
    base = {"b_flow": flow_uuid, "b_now": now}
    unfinished = int(conn.execute(statements.UNFINISHED, base).scalar() or 0)
    decided = settle_rule.decide(state, outstanding, False, unfinished=unfinished)
    if decided is settle_rule.Next.SUCCEED:
        states.check_flow_transition(state, states.SUCCESS, f"flow {flow_name!r}")
        conn.execute(_SUCCEED_FLOW, base)
        events.append(statements.event_row(flow_uuid, epoch, worker, "flow", state, states.SUCCESS, None))
    else:
        LOG.warning("flow %s is quiet with unfinished atoms; the sweep will look at it", flow_uuid)
        conn.execute(_SETTLE_COUNT, {**base, "b_outstanding": 0, "b_held": held})
    conn.execute(statements.ADD_EVENTS, events)
    return True
