"""The success path on PostgreSQL in five round trips per atom, not about fourteen.

:mod:`~celeryflow.runtime.fastpath` issues its statements one by one, each a round
trip, and psycopg sends ``BEGIN`` and ``COMMIT`` on their own: 9 statements in 2
transactions cost about 13 round trips per atom, most of a plain Celery hop on this
machine's loopback (docs/benchmarks.md). PostgreSQL's data-modifying CTEs let one
statement lock, guard, write and read back, so here:

* **claim** (``begin``) is one statement in autocommit: lock the flow row ``FOR
  SHARE``, compare-and-set the atom to RUNNING under the same guards as the general
  path (flow RUNNING at the message's epoch, no retry scope being retried, the atom
  queued for execute), insert its event, and read the flow's store and the results
  the atom's inputs come from. One round trip, one transaction.
* **finish** is ``BEGIN``, one statement that locks the flow ``FOR UPDATE``, records
  the success under the claim's token and counts it into the successors' joins
  (returning their join state), one statement that queues the ready successors,
  settles the flow's counters and inserts the event, and ``COMMIT``: four round trips.

When a guard does not hold nothing is written and the caller falls back, exactly as
:mod:`~celeryflow.runtime.fastpath` does: the claim to the general transaction, the
finish to the general path on the same (still locked) connection. The writes are the
same as the other paths' (``tests/engine/test_fastpath.py`` compares them row by row).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Text, and_, bindparam, cast, exists, false, func, insert, literal, not_, select, update
from sqlalchemy.engine import Connection

from celeryflow import serialization, states
from celeryflow.exceptions import DependencyFailure, NotFound
from celeryflow.persistence.tables import db_utcnow, utcnow
from celeryflow.runtime import fastpath, statements
from celeryflow.runtime.args import resolve
from celeryflow.runtime.fastpath import FALLBACK, _atoms, _events, _flows
from celeryflow.runtime.logbook import Dispatch, check_cas, claim_details
from celeryflow.scheduler import admission
from celeryflow.scheduler import claim as claim_rule
from celeryflow.scheduler import settle as settle_rule

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation


def _event_insert(prefix: str, source: Any = None) -> Any:
    """INSERT of one atom event whose values are bound parameters named ``prefix_*``."""
    columns = ("flow_uuid", "atom_name", "kind", "old_state", "new_state", "epoch", "worker", "details", "at")
    # typed: INSERT ... SELECT resolves untyped parameters as text, which an integer column refuses
    values = [bindparam(f"{prefix}_{c}", type_=_events.c[c].type) for c in columns]
    if source is None:
        return insert(_events).values(dict(zip(columns, values, strict=True)))
    return insert(_events).from_select(list(columns), select(*values).select_from(source))


def _claim_statement() -> Any:
    flow = (
        select(_flows.c.name, _flows.c.state, _flows.c.epoch, _flows.c.store, _flows.c.scope_retrying)
        .where(_flows.c.uuid == bindparam("b_flow"))
        .with_for_update(read=True)
        .cte("flow")
    )
    plain = exists(select(1).select_from(flow).where(
        flow.c.state == states.RUNNING, flow.c.epoch == bindparam("b_epoch"), flow.c.scope_retrying == false(),
    ))
    claimed = statements.CLAIM.where(plain).returning(_atoms.c.name).cte("claimed")
    event = _event_insert("e", claimed).returning(_events.c.id).cte("event")
    results = (
        select(cast(func.json_agg(func.json_build_array(_atoms.c.name, _atoms.c.result)), Text))
        .where(
            _atoms.c.flow_uuid == bindparam("b_flow"),
            _atoms.c.name.in_(bindparam("b_names", expanding=True)),
            _atoms.c.state.in_(statements.RESULT_STATES),
        )
        .scalar_subquery()
    )
    won = select(func.count()).select_from(claimed).scalar_subquery()
    return (
        select(flow.c.name, flow.c.store, won.label("won"), results.label("results"))
        .select_from(flow)
        .add_cte(event)
    )


_CLAIM = _claim_statement()


def begin(
    conn: Connection, comp: Compilation, flow_uuid: str, name: str, epoch: int, worker: str,
    make_begun: Callable[[dict[str, Any] | None, str, Exception | None], Any], token: str | None = None,
    task_id: str | None = None,
) -> Any:
    """Claim a queued task of a running flow and read its inputs in one statement; FALLBACK otherwise.

    ``conn`` is in autocommit mode: the statement is the transaction. Same contract as
    :func:`celeryflow.runtime.fastpath.begin`.
    """
    if not fastpath.ENABLED or comp.atoms[name].kind == "retry":
        return FALLBACK
    check_cas(claim_rule.EXECUTE_CLAIM.olds, claim_rule.EXECUTE_CLAIM.new, name)
    compiled = comp.atoms[name]
    needed = sorted({compiled.providers[s] for s in compiled.exec_args.values() if s in compiled.providers})
    details = claim_details(task_id)
    event = statements.event_row(flow_uuid, epoch, worker, "atom", None, states.RUNNING, name,
                   serialization.dumps(details) if details else None)
    params = {
        **statements.claim_params(claim_rule.EXECUTE_CLAIM, flow_uuid, name, worker, token), "b_epoch": epoch,
        "b_names": needed, **{f"e_{key}": value for key, value in event.items()},
    }
    row = conn.execute(_CLAIM, params).first()
    if row is None or not row.won:
        return FALLBACK  # nothing written: the general transaction says why (or claims it there)
    store = serialization.loads(row.store) or {}
    results = {atom: serialization.loads(text) for atom, text in json.loads(row.results or "[]")}
    save_as = {p: comp.atoms[p].save_as for p in needed}
    try:
        kwargs = resolve(name, compiled.exec_args, compiled.exec_optional, compiled.inject, store,
                         compiled.providers, results, save_as)
    except (NotFound, DependencyFailure) as exc:
        return make_begun(None, row.name, exc)  # the claim stays; the error is the atom's failure
    return make_begun(kwargs, row.name, None)


def _record_statement(with_joins: bool) -> Any:
    flow = (
        select(_flows.c.name, _flows.c.state, _flows.c.epoch, _flows.c.outstanding, _flows.c.held,
               _flows.c.scope_retrying)
        .where(_flows.c.uuid == bindparam("b_flow"))
        .with_for_update()
        .cte("flow")
    )
    plain = exists(select(1).select_from(flow).where(
        flow.c.state == states.RUNNING,
        flow.c.epoch == bindparam("b_epoch"),
        flow.c.scope_retrying == false(),
        # held atoms may be due for the dispatch window: admission.finish_needs_general_path, in SQL
        not_(and_(flow.c.held > 0, flow.c.outstanding - 1 <= bindparam("b_half"))),
    ))
    succeeded = statements.RECORD_CLAIM[claim_rule.EXECUTE].where(plain).returning(_atoms.c.name).cte("succeeded")
    won = select(func.count()).select_from(succeeded).scalar_subquery()
    columns = [flow.c.name, flow.c.state, flow.c.epoch, flow.c.outstanding, flow.c.held, won.label("won")]
    if with_joins:
        joined = (
            statements.COUNT_IN.where(exists(select(1).select_from(succeeded)))
            .returning(*statements.JOIN_COLUMNS)
            .cte("joined")
        )
        joins = select(cast(func.json_agg(func.json_build_array(
            joined.c.name, joined.c.waiting, joined.c.state, joined.c.intention, joined.c.queued,
        )), Text)).scalar_subquery()
        columns.append(joins.label("joins"))
    else:
        columns.append(literal(None, Text).label("joins"))
    return select(*columns).select_from(flow)


_RECORD = {True: _record_statement(True), False: _record_statement(False)}


def _settle_statement(with_queue: bool) -> Any:
    settle = (
        update(_flows)
        .where(_flows.c.uuid == bindparam("b_flow"))
        .values(outstanding=bindparam("b_outstanding"), held=bindparam("b_held"), progress_at=db_utcnow())
        .add_cte(_event_insert("e").returning(_events.c.id).cte("event"))
    )
    if with_queue:
        queue = statements.QUEUE.returning(_atoms.c.name).cte("queue")
        settle = settle.add_cte(queue)
    return settle


_SETTLE = {True: _settle_statement(True), False: _settle_statement(False)}


def finish(
    conn: Connection, comp: Compilation, flow_uuid: str, name: str, epoch: int, worker: str, result_json: str | None,
    window: int, token: str | None = None,
) -> Any:
    """Record a task's success in two statements; FALLBACK (nothing written) for anything else.

    Same contract as :func:`celeryflow.runtime.fastpath.finish`.
    """
    if token is None:  # callers driving the scheduler by hand: the per-worker guard
        return fastpath.finish(conn, comp, flow_uuid, name, epoch, worker, result_json, window, token)
    if not fastpath.ENABLED or comp.atoms[name].kind == "retry":
        return FALLBACK
    successors = list(comp.atoms[name].succs)
    if any(comp.atoms[s].deciders for s in successors):
        return FALLBACK
    success = claim_rule.EXECUTE_SUCCESS
    check_cas((success.old,), success.new, name)
    now = utcnow()
    params: dict[str, Any] = {
        **statements.record_params(success, flow_uuid, name, worker, token, result_json, None, now),
        "b_epoch": epoch, "b_half": window // 2,
    }
    if successors:
        params.update(b_names=successors, b_count=1)
    flow = conn.execute(_RECORD[bool(successors)], params).first()
    if flow is None or not flow.won:
        return FALLBACK  # a late result, or not the plain case: the general path, same transaction
    dispatch = Dispatch(flow_uuid, flow.name, flow.epoch)
    held = int(flow.held or 0)
    if successors:
        joins = {row[0]: fastpath.Join(*row[1:]) for row in json.loads(flow.joins or "[]")}
        admitted = admission.admit_successors(successors, joins, flow.outstanding, held, window)
        held = admitted.held
        dispatch.execute.extend(admitted.queue)
    outstanding = flow.outstanding - 1 + len(dispatch.execute)
    event = statements.event_row(flow_uuid, epoch, worker, "atom", states.RUNNING, states.SUCCESS, name)
    if settle_rule.is_quiet(outstanding, False):
        # the flow's last atom (or a quiet flow): once per flow, the general statements
        if dispatch.execute:
            conn.execute(statements.QUEUE, {"b_flow": flow_uuid, "b_names": dispatch.execute,
                                            "b_intention": states.EXECUTE})
        fastpath.settle_success(conn, flow_uuid, flow.name, flow.state, epoch, worker, outstanding, held, now,
                                [event])
        return dispatch
    settle = {"b_flow": flow_uuid, "b_outstanding": outstanding, "b_held": held,
              **{f"e_{key}": value for key, value in event.items()}}
    if dispatch.execute:
        settle.update(b_names=dispatch.execute, b_intention=states.EXECUTE)
    conn.execute(_SETTLE[bool(dispatch.execute)], settle)
    return dispatch
