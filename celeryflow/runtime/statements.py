"""The scheduler's shared SQL: statements both the general and the fast path run, built once.

The general transactions (:mod:`celeryflow.runtime.logbook` and the modules built on
it, through an ORM ``Session``) and the success path (:mod:`celeryflow.runtime.fastpath`,
:mod:`celeryflow.runtime.fastpath_pg`, on a bare ``Connection``) write the same rows the
same way: an atom is claimed, its outcome recorded, a finished atom is counted into its
successors' joins, ready atoms are marked queued, events are inserted, results are read
for inputs, unfinished atoms are counted.
Each of those statements is defined here once, so the two paths cannot drift apart.

The statements are built on the ORM entities (``update(AtomRow)``, not the bare table):
run through a ``Session`` they autoflush pending attribute writes first (a Core statement
on a bare ``Table`` would not, and could overtake a pending ``waiting`` written by
:func:`~celeryflow.runtime.logbook.recount`); on a ``Connection`` they run as plain Core.
None of them keeps the identity map in step (``synchronize_session=False``): a caller
that reads rows back after writing them loads them fresh
(:func:`~celeryflow.runtime.logbook.load_atoms`).

Parameters are bound by name: ``b_flow`` (the flow's uuid), ``b_atom`` (one atom's name),
``b_names`` (expanding: atom names), ``b_count``, ``b_intention``, and the claim's.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import bindparam, func, insert, select, update

from celeryflow import states
from celeryflow.persistence.tables import AtomRow, EventRow, db_utcnow, utcnow
from celeryflow.scheduler.claim import EXECUTE, REVERT, Claim, Outcome

_NO_SYNC: Final = {"synchronize_session": False}

#: states whose ``result`` a successor's inputs may read (a retrying or reverting atom's
#: result stays valid until it is reverted)
RESULT_STATES: Final = (states.SUCCESS, states.REVERTING, states.RETRYING)

#: claim ``b_atom`` for one execution or revert: from one of ``b_olds`` to ``b_new``, if it is
#: queued for ``b_intention`` (a lost compare-and-set is a duplicate delivery); the claim
#: gets its own token ``b_token`` and the database's clock for its liveness
CLAIM: Final = (
    update(AtomRow)
    .where(
        AtomRow.flow_uuid == bindparam("b_flow"),
        AtomRow.name == bindparam("b_atom"),
        AtomRow.state.in_(bindparam("b_olds", expanding=True)),
        AtomRow.intention == bindparam("b_intention"),
        AtomRow.queued.is_(True),
    )
    .values(
        state=bindparam("b_new"), queued=False, attempts=AtomRow.attempts + 1, worker=bindparam("b_worker"),
        started_at=db_utcnow(), heartbeat_at=db_utcnow(), claim_token=bindparam("b_token"),
    )
    .execution_options(**_NO_SYNC)
)



def _record(result: Any, failure: Any) -> Any:
    return (
        update(AtomRow)
        .where(
            AtomRow.flow_uuid == bindparam("b_flow"),
            AtomRow.name == bindparam("b_atom"),
            AtomRow.state == bindparam("b_old"),
            AtomRow.worker == bindparam("b_worker"),
        )
        .values({
            AtomRow.state: bindparam("b_new"), result: bindparam("b_result"), failure: bindparam("b_failure"),
            AtomRow.finished_at: bindparam("b_now"), AtomRow.progress: bindparam("b_progress"),
        })
        .execution_options(**_NO_SYNC)
    )


#: record a claim's outcome (the core's ``Outcome``: ``b_old`` to ``b_new``) by mode, guarded by
#: the worker id only: for callers without a claim token (the sweep failing a poison atom it
#: holds, callers driving the scheduler by hand)
RECORD: Final = {
    EXECUTE: _record(AtomRow.result, AtomRow.failure),
    REVERT: _record(AtomRow.revert_result, AtomRow.revert_failure),
}
#: the same, only while the claim is still the current one (its token: every worker message)
RECORD_CLAIM: Final = {mode: stmt.where(AtomRow.claim_token == bindparam("b_token")) for mode, stmt in RECORD.items()}

#: insert events: executed with a list of :func:`event_row` dicts (one statement)
ADD_EVENTS: Final = insert(EventRow)

#: ``{name: result text}`` of finished providers (``b_flow``, ``b_names``)
RESULTS: Final = select(AtomRow.name, AtomRow.result).where(
    AtomRow.flow_uuid == bindparam("b_flow"),
    AtomRow.name.in_(bindparam("b_names", expanding=True)),
    AtomRow.state.in_(RESULT_STATES),
)

#: count ``b_count`` finished predecessors into the join counters of ``b_names``
COUNT_IN: Final = (
    update(AtomRow)
    .where(AtomRow.flow_uuid == bindparam("b_flow"), AtomRow.name.in_(bindparam("b_names", expanding=True)))
    .values(waiting=AtomRow.waiting - bindparam("b_count"))
    .execution_options(**_NO_SYNC)
)
#: what :data:`COUNT_IN` leaves for the admission rule: the join state of each successor
JOIN_COLUMNS: Final = (AtomRow.name, AtomRow.waiting, AtomRow.state, AtomRow.intention, AtomRow.queued)
JOIN_STATE: Final = select(*JOIN_COLUMNS).where(
    AtomRow.flow_uuid == bindparam("b_flow"), AtomRow.name.in_(bindparam("b_names", expanding=True))
)
#: :data:`COUNT_IN` and :data:`JOIN_STATE` in one round trip (PostgreSQL, SQLite >= 3.35, MariaDB >= 10.5)
COUNT_IN_RETURNING: Final = COUNT_IN.returning(*JOIN_COLUMNS)

#: mark ``b_names`` as on the broker for ``b_intention`` (EXECUTE or REVERT)
QUEUE: Final = (
    update(AtomRow)
    .where(AtomRow.flow_uuid == bindparam("b_flow"), AtomRow.name.in_(bindparam("b_names", expanding=True)))
    .values(queued=True, queued_at=db_utcnow(), intention=bindparam("b_intention"))
    .execution_options(**_NO_SYNC)
)

#: how many atoms of ``b_flow`` are not done (settle: a quiet flow with unfinished atoms is stuck)
UNFINISHED: Final = select(func.count()).select_from(AtomRow).where(
    AtomRow.flow_uuid == bindparam("b_flow"), AtomRow.state.not_in(tuple(states.ATOM_DONE))
)


def event_row(flow_uuid: str, epoch: int, worker: str | None, kind: str, old: str | None, new: str | None,
              atom: str | None, details: str | None = None) -> dict[str, Any]:
    """One row for :data:`ADD_EVENTS` (``details``: already JSON-encoded, or None)."""
    return {"flow_uuid": flow_uuid, "atom_name": atom, "kind": kind, "old_state": old, "new_state": new,
            "epoch": epoch, "worker": worker, "details": details, "at": utcnow()}


def claim_params(claim: Claim, flow_uuid: str, name: str, worker: str, token: str | None) -> dict[str, Any]:
    """The parameters of :data:`CLAIM` for the core's ``claim`` (its olds, new state and intention)."""
    return {"b_flow": flow_uuid, "b_atom": name, "b_olds": list(claim.olds), "b_new": claim.new,
            "b_intention": claim.intention, "b_worker": worker, "b_token": token}


def record_params(outcome: Outcome, flow_uuid: str, name: str, worker: str, token: str | None,
                  result_json: str | None, failure_json: str | None, now: Any) -> dict[str, Any]:
    """The parameters of :data:`RECORD` / :data:`RECORD_CLAIM` for ``outcome``."""
    params = {"b_flow": flow_uuid, "b_atom": name, "b_old": outcome.old, "b_new": outcome.new,
              "b_worker": worker, "b_result": result_json, "b_failure": failure_json, "b_now": now,
              "b_progress": outcome.progress}
    if token is not None:
        params["b_token"] = token
    return params
