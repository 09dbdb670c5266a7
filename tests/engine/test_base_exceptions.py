"""An atom that raises ``SystemExit``, ``KeyboardInterrupt`` or ``GeneratorExit`` fails, like
any atom that raises (issue #12, item 11).

Before: on a separate prefork worker the pool child died with the atom's exception, the
message was redelivered until the atom counted as poison (WorkerLost); on the embedded
default ``SystemExit`` left the atom RUNNING with live heartbeats and ``run()`` waited
for ever. Now the exception is the atom's failure, recorded on the first delivery, the
flow is compensated, and the worker process lives on.
"""

from __future__ import annotations

import pytest

from celeryflow import exceptions, states
from celeryflow.patterns import linear_flow
from tests.engine.atoms import Exits, Step, read_trace


@pytest.mark.parametrize("raises", ["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
def test_an_atom_raising_a_base_exception_fails_and_is_compensated(flow_env, raises):
    trace = flow_env.trace()
    flow = linear_flow.Flow(f"exits-{raises}").add(Step("before", trace, provides="v"), Exits("exits", trace,
                                                                                              raises=raises))
    engine = flow_env.load(flow)
    # re-raised as the original type only for Exception subclasses: a BaseException from a
    # logbook row is never recreated (it would pass `except Exception` in the caller)
    with pytest.raises(exceptions.CeleryflowError) as info:
        engine.run(timeout=20)
    assert raises in str(info.value)
    assert engine.storage.get_atom_state("exits") == states.REVERTED
    assert engine.storage.get_atom_state("before") == states.REVERTED
    assert engine.storage.get_flow_state() == states.REVERTED
    executes = [n for w, n in read_trace(trace) if w == "execute"]
    assert executes.count("exits") == 1, "recorded on its first delivery, not redelivered"
    if flow_env.kind == "remote":
        assert "WorkerLost" not in str(info.value)
