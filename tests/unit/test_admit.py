"""``fastpath.admit``: which successors of a finished atom are queued, which are held (pure)."""

from __future__ import annotations

import pytest

from celeryflow import states
from celeryflow.runtime.fastpath import Join, admit

READY = Join(0, states.PENDING, states.EXECUTE, False)


@pytest.mark.parametrize(
    ("joins", "outstanding", "held", "window", "expected"),
    [
        ({"b": READY, "c": READY}, 1, 0, 512, (["b", "c"], 0)),  # room for both
        ({"b": READY, "c": READY}, 2, 0, 2, (["b"], 1)),  # one slot left: c is held
        ({"b": READY, "c": READY}, 3, 4, 2, ([], 6)),  # the window is full: both held on top
        ({"b": READY._replace(waiting=1), "c": READY}, 1, 0, 512, (["c"], 0)),  # b waits on another branch
        ({"b": READY._replace(queued=True), "c": READY}, 1, 0, 512, (["c"], 0)),  # b already queued
        ({"b": READY._replace(state=states.IGNORE), "c": READY}, 1, 0, 512, (["c"], 0)),  # b was decided away
        ({"b": READY._replace(intention=states.REVERT), "c": READY}, 1, 0, 512, (["c"], 0)),
        ({"c": READY}, 1, 0, 512, (["c"], 0)),  # b's row was not returned (not counted in)
    ],
)
def test_admit(joins, outstanding, held, window, expected):
    assert admit(["b", "c"], joins, outstanding, held, window) == expected
