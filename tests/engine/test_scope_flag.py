"""Whether a retry scope is being retried is a typed column, not a substring of the meta (#11 defect 16).

The flow's ``meta`` JSON also holds the user's engine options: a value that merely
contains the bookkeeping key must not send every message down the slow path. The
scheduler is driven by hand (control.start, steps.begin/finish) on every database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from celeryflow import engines, retry, states, task
from celeryflow.patterns import linear_flow, unordered_flow
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import FlowRow
from celeryflow.runtime import bookkeeping, control, fastpath, scopes, steps
from celeryflow.runtime.logbook import EXECUTE, REVERT


class Two(task.Task):
    def execute(self) -> int:
        return 2


BOOM = {"exc_type_names": ["ValueError"], "exception_str": "boom", "traceback_str": ""}


def _flow(backend: Any, flow_uuid: str) -> FlowRow:
    def read(session: Any) -> FlowRow:
        row = session.get(FlowRow, flow_uuid)
        session.expunge(row)
        return row

    return backend.run(read)


def test_an_option_mentioning_the_bookkeeping_key_keeps_the_fast_path(db_url: str) -> None:
    engine = engines.load(unordered_flow.Flow("fan").add(Two("a")), backend=db_url, note="retrying")
    engine.prepare()
    backend, comp, flow_uuid = fetch(db_url), engine.compile(), engine.flow_uuid
    dispatch = control.start(backend, comp, flow_uuid)
    row = _flow(backend, flow_uuid)
    assert '"retrying"' in (row.meta or "")  # the option is in the meta...
    assert not scopes.might_be_handled(row)  # ... and no scope is being retried
    claimed = backend.run_core(lambda conn: fastpath.begin(
        conn, comp, flow_uuid, "a", dispatch.epoch, "w:1", lambda kwargs, name, error: (kwargs, name), "t" * 32))
    assert claimed is not fastpath.FALLBACK, "a plain claim took the slow path"


def _drive_retry_round(db_url: str, after_failure: Any = None) -> tuple[Any, str, list[bool]]:
    """Run ``r(x)`` by hand, ``x`` failing once (a retry round); return the backend, the flow id and the flags seen.

    ``after_failure(backend, flow_uuid)`` runs once the round has begun.
    """
    flow = linear_flow.Flow("scoped", retry=retry.Times(3, name="r")).add(Two("x"))
    engine = engines.load(flow, backend=db_url)
    engine.prepare()
    backend, comp, flow_uuid = fetch(db_url), engine.compile(), engine.flow_uuid
    first = control.start(backend, comp, flow_uuid)
    todo = [(n, EXECUTE) for n in first.execute]
    seen: list[bool] = []
    failed = False
    while todo:
        name, mode = todo.pop(0)
        epoch = _flow(backend, flow_uuid).epoch
        begun = steps.begin(backend, comp, flow_uuid, name, epoch, mode, "w:1")
        assert begun.verdict is steps.Verdict.RUN, (name, mode, begun.reason)
        failure = None
        if name == "x" and mode == EXECUTE and not failed:
            failure, failed = BOOM, True
        after = steps.finish(backend, comp, flow_uuid, name, epoch, mode, "w:1", result=2 if failure is None else None,
                             failure=failure, token=begun.token)
        assert after is not None
        row = _flow(backend, flow_uuid)
        seen.append(row.scope_retrying)
        # the flag is derived from the typed record, and the meta holds none of the bookkeeping
        assert row.scope_retrying == scopes.might_be_handled(row) == bool(bookkeeping.retry_scopes(row))
        assert "retrying" not in _meta(row)
        if failure is not None and after_failure is not None:
            after_failure(backend, flow_uuid)
        todo.extend((n, EXECUTE) for n in after.execute)
        todo.extend((n, REVERT) for n in after.revert)
    return backend, flow_uuid, seen


def test_the_flag_is_set_for_a_retry_round_and_cleared_after_it(db_url: str) -> None:
    backend, flow_uuid, seen = _drive_retry_round(db_url)
    assert True in seen and seen[-1] is False
    assert _flow(backend, flow_uuid).state == states.SUCCESS


def test_a_user_rewriting_the_meta_mid_round_leaves_the_round_alone(db_url: str) -> None:
    """The meta is the user's: saving a flow detail read before the round began loses no scheduler state."""

    def overwrite(backend: Any, flow_uuid: str) -> None:
        backend.run(lambda session: session.execute(
            update(FlowRow).where(FlowRow.uuid == flow_uuid).values(meta='{"mine": 1}')))

    backend, flow_uuid, seen = _drive_retry_round(db_url, overwrite)
    assert True in seen and seen[-1] is False
    row = _flow(backend, flow_uuid)
    assert row.state == states.SUCCESS and _meta(row) == {"mine": 1}


def _meta(row: FlowRow) -> dict[str, Any]:
    from celeryflow import serialization

    return dict(serialization.loads(row.meta) or {})
