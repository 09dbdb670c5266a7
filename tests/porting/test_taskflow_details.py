"""#13: what TaskFlow's programs print of atoms and details here as under TaskFlow.

``str(atom)``, a first ``RUNNING`` notification's ``old_state`` and a task's progress in
its detail's metadata (``LogBook.pformat()``), on the embedded default. TaskFlow's own
examples show the same through tests/porting/test_taskflow_examples.py
(create_parallel_volume, persistence_example, resume_from_backend).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from celeryflow import engines, states
from celeryflow.listeners import capturing
from celeryflow.patterns import linear_flow
from celeryflow.persistence import models
from tests.porting.atoms import AddOne, Boom, Hi, make_hello


@pytest.fixture
def logbook(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'logbook.db'}"


def test_an_atom_prints_as_in_taskflow() -> None:
    assert str(Hi()) == '"tests.porting.atoms.Hi==1.0"'
    assert repr(Hi()) == '<tests.porting.atoms.Hi "tests.porting.atoms.Hi==1.0">'


def test_a_first_running_notification_comes_from_pending(logbook: str) -> None:
    engine = engines.load(make_hello(), backend=logbook, engine="parallel")
    with capturing.CaptureListener(engine, capture_flow=False) as listener:
        engine.run()
    moves = [(d["task_name"], d["old_state"], s) for _, s, d in listener.values]
    for name in ("tests.porting.atoms.Hi", "tests.porting.atoms.AddOne"):
        assert [(old, new) for n, old, new in moves if n == name] == [
            (states.PENDING, states.RUNNING), (states.RUNNING, states.SUCCESS)]


def test_a_ran_tasks_detail_keeps_its_progress_in_its_metadata(logbook: str) -> None:
    book = models.LogBook("details")
    flow = linear_flow.Flow("hello").add(Hi(), Boom(), AddOne())
    engine = engines.load(flow, backend=logbook, book=book)
    with pytest.raises(ValueError, match="boom after hi"):
        engine.run()
    (detail,) = list(book)
    assert sorted((ad.name, ad.state, ad.meta.get("progress")) for ad in detail) == [
        ("tests.porting.atoms.AddOne", states.PENDING, None),  # never ran: no progress (as in TaskFlow)
        ("tests.porting.atoms.Boom", states.REVERTED, 1.0),  # TaskFlow: REVERTED at progress 1.0
        ("tests.porting.atoms.Hi", states.REVERTED, 1.0),
    ]
    assert book.pformat().count("+ progress = 100.00%") == 2
