"""An input error found while claiming an atom is that atom's failure, never a retried claim.

Three causes: a provider whose result does not match its ``provides`` tuple, a
``decider_depth="ATOM"`` decider ignoring an atom whose output a later atom needs,
and revert inputs that cannot be resolved. Each runs (a) on the embedded default,
where ``run()`` must raise the input error (with a timeout, so a regression fails
instead of hanging), and (b) driven by hand (control.start / steps.begin /
steps.finish, as a worker runs them) on every logbook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from celeryflow import engines, exceptions, states, task
from celeryflow.patterns import graph_flow, linear_flow
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import AtomRow, FlowRow
from celeryflow.runtime import control, steps
from celeryflow.runtime.logbook import EXECUTE, REVERT

TIMEOUT = 15.0
#: what the atoms return when driven by hand (the rest return "done")
RESULTS: dict[str, Any] = {"a": [1]}


class Short(task.Task):
    """Declares two outputs but returns one: its successors' inputs cannot be read."""

    def execute(self) -> list[int]:
        return [1]


class Needs(task.Task):
    def execute(self, q: int) -> int:
        return q


class Plain(task.Task):
    def execute(self) -> str:
        return "done"


class RevertNeeds(task.Task):
    """Executes without inputs; its revert needs ``q``."""

    def execute(self) -> str:
        return "done"

    def revert(self, q: int, **kwargs: Any) -> None:
        pass


class Boom(task.Task):
    def execute(self) -> None:
        raise RuntimeError("boom")


def deny(history: dict[str, Any]) -> bool:
    return False


def short_provider() -> linear_flow.Flow:
    return linear_flow.Flow("short").add(Short("a", provides=("p", "q")), Needs("b"))


def ignored_provider() -> graph_flow.Flow:
    """a -(deny, ATOM)-> x -> y; y needs x's output, which x (ignored) never made."""
    a, x, y = Plain("a"), Plain("x", provides="q"), Needs("y")
    flow = graph_flow.Flow("ignored").add(a, x, y)
    flow.link(a, x, decider=deny, decider_depth="ATOM")
    return flow


def unresolvable_revert() -> linear_flow.Flow:
    """a provides q at index 1 of a one-item list; b's revert needs q; c fails, so b reverts."""
    return linear_flow.Flow("revert-inputs").add(Short("a", provides=("p", "q")), RevertNeeds("b"), Boom("c"))


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'logbook.db'}"


def test_provider_result_short_of_its_provides_fails_the_consumer(tmp_path: Path) -> None:
    engine = engines.load(short_provider(), backend=_sqlite(tmp_path))
    with pytest.raises(exceptions.NotFound, match="'a' was declared to provide 'q'"):
        engine.run(timeout=TIMEOUT)
    st = engine.storage
    assert st.get_atom_state("b") == states.REVERTED  # failed, then reverted, as any failed atom
    assert st.get_atom_state("a") == states.REVERTED
    assert st.get_flow_state() == states.REVERTED


def test_atom_depth_decider_ignoring_a_provider_fails_the_consumer(tmp_path: Path) -> None:
    engine = engines.load(ignored_provider(), backend=_sqlite(tmp_path))
    with pytest.raises(exceptions.MissingDependencies) as info:
        engine.run(timeout=TIMEOUT)
    assert info.value.missing_requirements == {"y": ["q"]}
    st = engine.storage
    assert st.get_atom_state("x") == states.IGNORE
    assert st.get_atom_state("y") == states.REVERTED
    assert st.get_atom_state("a") == states.REVERTED
    assert st.get_flow_state() == states.REVERTED


def test_unresolvable_revert_inputs_are_that_atoms_revert_failure(tmp_path: Path) -> None:
    engine = engines.load(unresolvable_revert(), backend=_sqlite(tmp_path))
    with pytest.raises(exceptions.CeleryflowError) as info:
        engine.run(timeout=TIMEOUT)
    assert not isinstance(info.value, exceptions.Timeout)
    assert "'a' was declared to provide 'q'" in str(info.value)
    st = engine.storage
    assert st.get_atom_state("b") == states.REVERT_FAILURE
    assert st.get_flow_state() == states.FAILURE


# -- driven by hand, on every logbook ---------------------------------------------------------


def _atoms(backend: Any, flow_uuid: str) -> dict[str, str]:
    query = select(AtomRow.name, AtomRow.state).where(AtomRow.flow_uuid == flow_uuid)
    return backend.run(lambda s: dict(s.execute(query).all()))


def _flow_state(backend: Any, flow_uuid: str) -> tuple[str, int]:
    def read(session: Any) -> tuple[str, int]:
        flow = session.get(FlowRow, flow_uuid)
        return flow.state, flow.outstanding

    return backend.run(read)


def _drive(url: str, flow: Any) -> tuple[Any, str, dict[str, dict[str, Any]]]:
    """Run ``flow`` as workers would, feeding each input error to finish as run_step does.

    Returns the backend, the flow id and the input errors found, by atom name. Every
    claim must commit: a claim that raised (rolled back) fails the test at once.
    """
    engine = engines.load(flow, backend=url)
    engine.prepare()
    comp, flow_uuid, backend = engine.compile(), engine.flow_uuid, fetch(url)
    first = control.start(backend, comp, flow_uuid, owner="test")
    todo = [(n, EXECUTE) for n in first.execute]
    errors: dict[str, dict[str, Any]] = {}
    while todo:
        name, mode = todo.pop(0)
        begun = steps.begin(backend, comp, flow_uuid, name, first.epoch, mode, "w:1")
        if begun.verdict is steps.Verdict.SKIP:
            continue
        if begun.verdict is steps.Verdict.REFUSE:
            after = steps.refuse(backend, comp, flow_uuid, name, first.epoch, "w:1", mode)
        else:
            assert _atoms(backend, flow_uuid)[name] == (states.RUNNING if mode == EXECUTE else states.REVERTING)
            failure = begun.input_error
            if failure is None and mode == EXECUTE and name == "c":
                failure = {"exc_type_names": ["builtins.RuntimeError"], "exception_str": "boom", "traceback_str": ""}
            if failure is not None and name != "c":
                errors[name] = failure
            after = steps.finish(backend, comp, flow_uuid, name, first.epoch, mode, "w:1",
                                 result=None if failure else RESULTS.get(name, "done"), failure=failure,
                                 decide=lambda link, history: False)
        if after is not None:
            todo.extend((n, EXECUTE) for n in after.execute)
            todo.extend((n, REVERT) for n in after.revert)
    return backend, flow_uuid, errors


def test_short_provider_by_hand_is_the_consumers_failure(any_db_url: str) -> None:
    backend, flow_uuid, errors = _drive(any_db_url, short_provider())
    assert list(errors) == ["b"] and "exceptions.NotFound" in errors["b"]["exc_type_names"][0]
    assert _flow_state(backend, flow_uuid) == (states.REVERTED, 0)
    assert _atoms(backend, flow_uuid) == {"a": states.REVERTED, "b": states.REVERTED}


def test_ignored_provider_by_hand_is_the_consumers_failure(any_db_url: str) -> None:
    backend, flow_uuid, errors = _drive(any_db_url, ignored_provider())
    assert list(errors) == ["y"] and "MissingDependencies" in errors["y"]["exc_type_names"][0]
    assert _flow_state(backend, flow_uuid) == (states.REVERTED, 0)
    assert _atoms(backend, flow_uuid) == {"a": states.REVERTED, "x": states.IGNORE, "y": states.REVERTED}


def test_unresolvable_revert_inputs_by_hand_are_a_revert_failure(any_db_url: str) -> None:
    backend, flow_uuid, errors = _drive(any_db_url, unresolvable_revert())
    assert list(errors) == ["b"]
    assert _flow_state(backend, flow_uuid) == (states.FAILURE, 0)
    assert _atoms(backend, flow_uuid)["b"] == states.REVERT_FAILURE
