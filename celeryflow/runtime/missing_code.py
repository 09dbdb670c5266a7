"""A worker without an atom's code: a deployment error, not the atom's failure.

During a rolling deploy (or with ``CELERYFLOW_IMPORTS`` missing a module) a worker may
receive an atom whose class, function or flow factory it does not have. It does not
claim the atom. The atom stays queued and its message is delivered again every
:data:`WAIT_INTERVAL` seconds (Celery's retry: Flower's task view shows it RETRY with the
reason), so a worker that has the code takes it; the reason, and since when, is
written on the atom's row (``celeryflow_atoms.wait_reason``: ``flows show``, ``top``), and
its ``queued_at`` is refreshed so the sweep does not take the message for lost.

After ``missing_code_timeout`` seconds (``CELERYFLOW_MISSING_CODE_TIMEOUT``, default
600; ``none``: wait for ever) the atom fails with :class:`AtomCodeMissing`: the flow
compensates what ran before it, and the atom's own revert is never called (it never
ran). A revert message for such an atom needs no code, so any worker completes it.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from celeryflow import serialization, states
from celeryflow.exceptions import AtomCodeMissing, CorruptSpec, NotRegistered
from celeryflow.persistence import rows
from celeryflow.persistence.rows import FlowState
from celeryflow.persistence.tables import AtomRow, db_now, db_utcnow
from celeryflow.runtime import scopes
from celeryflow.runtime.logbook import REVERT

if TYPE_CHECKING:
    from celery import Task
    from sqlalchemy.orm import Session

    from celeryflow.persistence.backends.base import Backend
    from celeryflow.runtime.context import FlowRuntime
    from celeryflow.runtime.settings import Settings

LOG = logging.getLogger("celeryflow.worker")

#: seconds between deliveries of a message whose atom's code this worker lacks
WAIT_INTERVAL = 2.0
_MARK = f"{AtomCodeMissing.__module__}.{AtomCodeMissing.__qualname__}"


class Hold(enum.Enum):
    PROCEED = "proceed"  # claim it: a revert that needs no code, or the wait is over (fail it)
    DROP = "drop"  # the message is stale (the atom is no longer queued for it)


def lacks_code(runtime: FlowRuntime, name: str) -> NotRegistered | None:
    """Why this process cannot build atom ``name`` of the flow (None: it can)."""
    try:
        runtime.atom(name)
    except CorruptSpec:
        return None  # not a deployment matter: the ordinary path records it
    except NotRegistered as exc:
        return exc
    return None


def never_ran(failure: dict[str, Any] | None) -> bool:
    """Whether ``failure`` (a Failure dict) is an atom's failure for want of code: it never ran."""
    names = (failure or {}).get("exc_type_names") or []
    return _MARK in names


def hold(task: Task, backend: Backend, runtime: FlowRuntime, name: str, epoch: int, mode: str,
         missing: NotRegistered, settings: Settings, worker: str) -> tuple[Hold, AtomCodeMissing | None]:
    """Decide what to do with a message whose atom this worker cannot build.

    Returns ``(PROCEED, None)`` for a revert of an atom that never ran or an atom the flow
    no longer wants (``steps.begin`` refuses it, as for any message), ``(PROCEED, exc)``
    once the wait is over (claim the atom and record ``exc`` as its failure), ``(DROP,
    None)`` for a stale message; otherwise records the wait and raises Celery's ``Retry``.
    """
    flow_uuid = runtime.uuid

    def txn(session: Session) -> tuple[str, Any]:
        flow = rows.lock_flow(session, flow_uuid, shared=True)
        row = session.execute(
            select(AtomRow.queued, AtomRow.failure, AtomRow.wait_reason)
            .where(AtomRow.flow_uuid == flow_uuid, AtomRow.name == name)
        ).first()
        if flow is None or row is None or flow.epoch != epoch or not row.queued:
            return "drop", None
        if mode == REVERT and never_ran(serialization.loads(row.failure)):
            return "proceed", None
        if not _wanted(runtime, flow, name, mode):
            return "proceed", None  # the flow no longer wants it (suspending, failing): begin refuses it
        now = db_now(session)
        # one wait per message: a retried message keeps its task id; a new dispatch (a retry
        # round, a resume, the sweep's resend) is a new message and waits afresh
        key = f"{mode}:{epoch}:{getattr(task.request, 'id', None)}"
        old = _decode(row.wait_reason)
        since = now
        if old.get("key") == key:
            try:
                since = dt.datetime.fromisoformat(str(old["since"]))
            except (KeyError, ValueError):
                pass
        waited = (now - since).total_seconds()
        timeout = settings.missing_code_timeout
        if timeout is not None and waited >= timeout:
            return "fail", waited
        reason = (f"waiting for a worker that has its code: {worker} lacks it ({missing}); deploy it there "
                  "or stop that worker")
        session.execute(
            update(AtomRow)
            .where(AtomRow.flow_uuid == flow_uuid, AtomRow.name == name, AtomRow.queued.is_(True))
            .values(wait_reason=json.dumps({"reason": reason, "since": since.isoformat(), "key": key, "mode": mode}),
                    queued_at=db_utcnow())  # a live message: the sweep must not resend it
            .execution_options(synchronize_session=False)
        )
        return ("new" if old.get("key") != key else "wait"), reason

    what, detail = backend.run(txn)
    if what == "drop":
        return Hold.DROP, None
    if what == "proceed":
        return Hold.PROCEED, None
    if what == "fail":
        return Hold.PROCEED, AtomCodeMissing(
            f"No worker that received atom {name!r} of flow {flow_uuid} ({mode}) had its code in "
            f"{detail:.0f}s (CELERYFLOW_MISSING_CODE_TIMEOUT): {missing}. It never ran. Deploy the code to every "
            "worker (CELERYFLOW_IMPORTS), then run the flow again"
        )
    LOG.log(logging.WARNING if what == "new" else logging.INFO, "atom %s of flow %s (%s): %s", name, flow_uuid,
            mode, detail)
    # max_retries=None would mean the task's default (3): the wait is bounded by the timeout instead
    retries = int(getattr(task.request, "retries", 0) or 0)
    raise task.retry(countdown=WAIT_INTERVAL, max_retries=retries + 1, exc=AtomCodeMissing(detail))


def _wanted(runtime: FlowRuntime, flow: FlowState, name: str, mode: str) -> bool:
    """Whether the flow would let ``name`` start now (else ``steps.begin`` refuses and un-queues it)."""
    if mode == REVERT:
        return flow.state in (states.REVERTING, states.RUNNING)
    return flow.state == states.RUNNING and not scopes.blocked(runtime.comp, flow, name)


def reason_of(wait_reason: str | None) -> str | None:
    """The reason stored in an atom row's ``wait_reason`` column, with since when (None: not waiting)."""
    found = _decode(wait_reason)
    if not found.get("reason"):
        return None
    return f"{found['reason']} (since {str(found.get('since', '?'))[:19]} UTC)"


def _decode(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


__all__ = ["WAIT_INTERVAL", "Hold", "hold", "lacks_code", "never_ran", "reason_of"]
