"""#13 item 8: a namedtuple in the store or in a result is refused (JSON would make it a list)."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest

from celeryflow import engines, exceptions, serialization, task
from celeryflow.patterns import linear_flow
from tests.porting.atoms import Echo

Point = collections.namedtuple("Point", "x y")


class ReturnsPoint(task.Task):
    default_provides = "point"

    def execute(self) -> Any:
        return {"where": [Point(1, 2)]}


@pytest.fixture
def logbook(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'logbook.db'}"


def test_store_namedtuple_refused_at_submit_naming_the_key(logbook: str) -> None:
    flow = linear_flow.Flow("nt").add(Echo())
    with pytest.raises(exceptions.SerializationError, match=r"store value 'value' is a namedtuple \(Point\)"):
        engines.run(flow, store={"value": Point(1, 2)}, backend=logbook)
    with pytest.raises(exceptions.SerializationError, match=r"store value 'value'\['p'\]\[0\] is a namedtuple"):
        engines.load(flow, store={"value": {"p": [Point(1, 2)]}}, backend=logbook).run()


def test_submit_refuses_it_before_anything_is_written(logbook: str) -> None:
    import celeryflow
    from celeryflow.persistence import backends

    with pytest.raises(exceptions.SerializationError, match="namedtuple"):
        celeryflow.submit(linear_flow.Flow("nt").add(Echo()), store={"value": Point(1, 2)}, backend=logbook)
    assert backends.fetch(logbook).list_flows() == []


def test_inject_refuses_it(logbook: str) -> None:
    engine = engines.load(linear_flow.Flow("nt").add(Echo()), store={"value": 1}, backend=logbook)
    with pytest.raises(exceptions.SerializationError, match="store value 'value' is a namedtuple"):
        engine.storage.inject({"value": Point(1, 2)})


def test_result_namedtuple_fails_the_atom_naming_it(logbook: str) -> None:
    engine = engines.load(linear_flow.Flow("nt").add(ReturnsPoint()), backend=logbook)
    with pytest.raises(exceptions.SerializationError, match=r"result of atom .*\['where'\]\[0\] is a namedtuple"):
        engine.run()
    assert engine.storage.get_flow_state() == "REVERTED"


def test_plain_tuples_still_become_lists_and_asdict_works() -> None:
    assert serialization.roundtrip_value({"t": (1, 2)}) == {"t": [1, 2]}
    assert serialization.roundtrip_value(Point(1, 2)._asdict()) == {"x": 1, "y": 2}
