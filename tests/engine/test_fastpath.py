"""The Core fast paths (runtime/fastpath.py; fastpath_pg.py on PostgreSQL) write what the general ORM path writes.

Each flow runs twice on the same logbook, once with the fast path on and once with it
off; the atoms' rows, the flow's row and the events must come out the same (events
as a multiset: the embedded worker's threads interleave independent atoms).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from celeryflow import engines, task
from celeryflow.patterns import graph_flow, linear_flow, unordered_flow
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import AtomRow, EventRow, FlowRow
from celeryflow.runtime import fastpath, fastpath_pg


class Add(task.Task):
    def execute(self, x: int, y: int) -> int:
        return x + y


class Source(task.Task):
    def execute(self, seed: int) -> int:
        return seed * 2


class Boom(task.Task):
    def execute(self, x: int) -> None:
        raise ValueError(f"boom at {x}")

    def revert(self, x: int, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        return None


def diamond() -> graph_flow.Flow:
    """A join: two branches read ``a`` and are counted into ``total``."""
    return graph_flow.Flow("diamond").add(
        Source("a", provides="x", rebind={"seed": "seed"}),
        Add("left", provides="l", rebind={"y": "one"}),
        Add("right", provides="r", rebind={"y": "two"}),
        Add("total", provides="t", rebind={"x": "l", "y": "r"}),
    )


def nested() -> linear_flow.Flow:
    inner = unordered_flow.Flow("fan").add(*(Add(f"u{i}", provides=f"u{i}", rebind={"y": "one"}) for i in range(5)))
    return linear_flow.Flow("nested").add(Source("s", provides="x"), inner, Add("last", provides="z"))


def failing() -> linear_flow.Flow:
    return linear_flow.Flow("failing").add(Source("s", provides="x"), Boom("b"), Add("never", provides="z"))


STORE = {"seed": 3, "one": 1, "two": 2, "y": 10}


def _snapshot(url: str, flow_uuid: str) -> dict[str, Any]:
    backend = fetch(url)

    def read(session: Any) -> dict[str, Any]:
        atoms = {
            row.name: (row.state, row.intention, row.queued, row.waiting, row.attempts, row.result, row.progress)
            for row in session.scalars(select(AtomRow).where(AtomRow.flow_uuid == flow_uuid))
        }
        flow = session.scalars(select(FlowRow).where(FlowRow.uuid == flow_uuid)).one()
        events = Counter(
            (e.kind, e.atom_name, e.old_state, e.new_state)
            for e in session.scalars(select(EventRow).where(EventRow.flow_uuid == flow_uuid))
        )
        return {"atoms": atoms, "flow": (flow.state, flow.outstanding), "events": events}

    return backend.run(read)


def _run(factory: Any, url: str, enabled: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], int]:
    monkeypatch.setattr(fastpath, "ENABLED", enabled)
    taken = Counter[str]()
    for module in (fastpath, fastpath_pg):  # fastpath_pg: PostgreSQL's fewer round trips
        for name in ("begin", "finish"):
            original = getattr(module, name)

            def counting(*args: Any, _original: Any = original, _name: str = name) -> Any:
                out = _original(*args)
                if out is not fastpath.FALLBACK:
                    taken[_name] += 1
                return out

            monkeypatch.setattr(module, name, counting)
    engine = engines.load(factory(), store=STORE, backend=url)
    try:
        engine.run(timeout=60)
    except ValueError:
        pass
    monkeypatch.undo()
    return _snapshot(url, engine.flow_uuid), sum(taken.values())


@pytest.mark.parametrize("factory", [diamond, nested, failing], ids=lambda f: f.__name__)
def test_fast_path_writes_what_the_general_path_writes(factory: Any, any_db_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    general, general_taken = _run(factory, any_db_url, False, monkeypatch)
    fast, fast_taken = _run(factory, any_db_url, True, monkeypatch)
    assert general_taken == 0
    assert fast_taken > 0, "the fast path was never taken"
    assert fast == general


def test_fast_path_results(any_db_url: str) -> None:
    results = engines.run(diamond(), store=STORE, backend=any_db_url)
    assert (results["x"], results["l"], results["r"], results["t"]) == (6, 7, 8, 15)
