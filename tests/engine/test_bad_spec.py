"""A flow whose stored spec cannot be decoded ends FAILURE with a clear reason.

Neither a delivery nor the sweep may raise on it for ever: the first to read the
spec fails the flow (the reason in its failures, in the flow event's details and
in ``celeryflow flows show``), the worker keeps serving, and the sweep stops
looking at the flow.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from click.testing import CliRunner
from sqlalchemy import select, update

from celeryflow import engines, exceptions, serialization, states, task
from celeryflow.cli import cli
from celeryflow.patterns import linear_flow, unordered_flow
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow
from celeryflow.runtime import backends as backend_keys
from celeryflow.runtime import context, control, dispatch, embedded, steps
from celeryflow.runtime.logbook import EXECUTE
from celeryflow.runtime.settings import Settings
from celeryflow.sweep import Sweeper

#: each cannot be decoded: not JSON; JSON of the wrong shape; no compilation; a broken
#: compilation (the TypeError of the issue); a spec version this code does not know
BAD_SPECS = [
    "{not json",
    "[1, 2]",
    '{"version": 1}',
    '{"version": 1, "compilation": {"atoms": 5}}',
    '{"version": 99, "compilation": {}}',
]


class Echo(task.Task):
    def execute(self) -> str:
        return "ok"


def fan() -> unordered_flow.Flow:
    return unordered_flow.Flow("fan").add(Echo("e1"), Echo("e2"))


def _started_with_bad_spec(url: str, spec_text: str) -> tuple[Any, Any, Any]:
    """A RUNNING flow with queued atoms whose spec is then replaced; this process forgets it."""
    engine = engines.load(fan(), backend=url)
    engine.prepare()
    backend, comp = fetch(url), engine.compile()
    first = control.start(backend, comp, engine.flow_uuid, owner="test")
    backend.run(lambda s: s.execute(update(FlowRow).where(FlowRow.uuid == engine.flow_uuid).values(spec=spec_text)))
    # As in any process but the submitter's: the flow is known only from its logbook row.
    context.forget_live(engine.flow_uuid)
    context.forget_cached(engine.flow_uuid)
    return backend, comp, first


def _flow(backend: Any, flow_uuid: str) -> tuple[str, dict[str, Any], list[Any]]:
    def read(session: Any) -> tuple[str, dict[str, Any], list[Any]]:
        row = session.get(FlowRow, flow_uuid)
        events = session.execute(
            select(EventRow.new_state, EventRow.details)
            .where(EventRow.flow_uuid == flow_uuid, EventRow.kind == "flow").order_by(EventRow.id)
        ).all()
        return row.state, serialization.loads(row.failures) or {}, [tuple(e) for e in events]

    return backend.run(read)


def _wait_for_state(backend: Any, flow_uuid: str, wanted: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = _flow(backend, flow_uuid)[0]
        if state == wanted or time.monotonic() > deadline:
            return state
        time.sleep(0.02)  # polling the logbook with a deadline, not standing in for synchronisation


@pytest.mark.parametrize("spec_text", BAD_SPECS)
def test_stored_spec_that_cannot_be_decoded_is_a_clear_error(spec_text: str) -> None:
    from celeryflow import spec as specmod

    with pytest.raises(exceptions.CorruptSpec, match=r"stored spec .* cannot be decoded"):
        specmod.decode_stored(spec_text, "flow-1")


def test_a_delivery_fails_the_flow_with_a_clear_reason_and_the_worker_lives(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'logbook.db'}"
    backend, _, first = _started_with_bad_spec(url, '{"version": 1, "compilation": {"atoms": 5}}')
    app = embedded.embedded_app()
    embedded.ensure_worker(app)
    key = backend_keys.remember(backend)
    for name in first.execute:
        dispatch.signature(app, first, name, EXECUTE, key).apply_async()
    assert _wait_for_state(backend, first.flow_uuid, states.FAILURE) == states.FAILURE
    _, failures, events = _flow(backend, first.flow_uuid)
    assert len(failures) == 1
    (reason,) = failures.values()
    assert "exceptions.CorruptSpec" in reason["exc_type_names"][0]
    assert "cannot be decoded" in reason["exception_str"] and "TypeError" in reason["exception_str"]
    assert events[-1][0] == states.FAILURE and "cannot be decoded" in events[-1][1]
    shown = CliRunner().invoke(cli, ["flows", "show", "-b", url, first.flow_uuid], catch_exceptions=False)
    assert shown.exit_code == 0 and "cannot be decoded" in shown.output, shown.output
    # the worker still serves flows
    assert engines.run(linear_flow.Flow("after").add(Echo("x", provides="v")), backend=url) == {"v": "ok"}


def test_the_sweep_fails_the_flow_once_and_then_leaves_it_alone(any_db_url: str) -> None:
    backend, comp, first = _started_with_bad_spec(any_db_url, "{not json")
    # one atom is in a worker's hands, one still queued: the sweep finds the flow both ways
    claimed = steps.begin(backend, comp, first.flow_uuid, first.execute[0], first.epoch, EXECUTE, "w:1")
    assert claimed.verdict is steps.Verdict.RUN
    app = Celery("bad-spec", broker="memory://", set_as_current=False)
    settings = Settings(heartbeat_timeout=0.0, heartbeat_interval=0.0, backend=any_db_url)
    sweeper = Sweeper(app, backend=backend, settings=settings, name="unit")
    sweeper.sweep()
    state, failures, events = _flow(backend, first.flow_uuid)
    assert state == states.FAILURE
    assert "cannot be decoded" in next(iter(failures.values()))["exception_str"]
    assert events[-1][0] == states.FAILURE

    def atoms(session: Any) -> dict[str, tuple[str, bool]]:
        rows = session.execute(select(AtomRow.name, AtomRow.state, AtomRow.queued)
                               .where(AtomRow.flow_uuid == first.flow_uuid))
        return {name: (st, bool(queued)) for name, st, queued in rows}

    after = backend.run(atoms)
    assert not any(queued for _, queued in after.values())
    assert after[first.execute[0]][0] == states.FAILURE  # abandoned in its worker's hands
    again = sweeper.sweep()
    assert again.examined == 0 and not again.errors
    # a late result of the abandoned execution changes nothing
    assert steps.finish(backend, comp, first.flow_uuid, first.execute[0], first.epoch, EXECUTE, "w:1",
                        result="ok") is None
    assert _flow(backend, first.flow_uuid)[0] == states.FAILURE
