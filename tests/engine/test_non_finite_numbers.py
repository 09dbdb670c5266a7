"""NaN and Infinity are not JSON: they are refused like any other non-JSON value.

Python's ``json`` writes them as the bare tokens ``NaN`` / ``Infinity``, which no JSON
parser has to accept (PostgreSQL's ``::json`` rejects them), so a logbook row holding
one could not be read by SQL tools, and its value would differ between databases.
They are refused with SerializationError naming where they came from: atom results,
store values, ``inject=``.
"""

from __future__ import annotations

import math

import pytest
from sqlalchemy import func, select

from celeryflow import compiler, engines, exceptions, serialization, states, task
from celeryflow.patterns import linear_flow
from celeryflow.persistence.backends import fetch
from celeryflow.persistence.tables import FlowRow

NON_FINITE = [math.nan, math.inf, -math.inf]


class Ratio(task.Task):
    """Returns a float that JSON cannot hold (a 0/0 measured as NaN, say)."""

    def execute(self, value: str) -> dict[str, float]:
        return {"ratio": float(value)}


class Uses(task.Task):
    def execute(self, x: float) -> float:
        return x


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_non_finite_floats_are_refused_naming_the_culprit(value):
    with pytest.raises(exceptions.SerializationError, match=r"result of atom 'x'\['k'\]\[1\] is a float"):
        serialization.dumps({"k": [1.5, value]}, "result of atom 'x'")
    with pytest.raises(exceptions.SerializationError, match="not JSON-serializable"):
        serialization.dumps(value)


def test_finite_floats_still_round_trip():
    value = {"f": 1.5, "big": 1e308, "tiny": -5e-324, "zero": -0.0}
    assert serialization.loads(serialization.dumps(value)) == value


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_result_fails_that_atom(db_url, value):
    engine = engines.load(linear_flow.Flow("nan-result").add(Ratio("ratio", inject={"value": value})),
                          backend=db_url)
    with pytest.raises(exceptions.SerializationError) as info:
        engine.run(timeout=30)
    assert "result of atom 'ratio'['ratio'] is a float" in str(info.value)
    assert engine.storage.get_flow_state() == states.REVERTED


def test_non_finite_store_value_is_refused_at_the_caller(db_url):
    with pytest.raises(exceptions.SerializationError, match="store value 'x'"):
        engines.load(linear_flow.Flow("nan-store").add(Uses("u")), store={"x": math.nan}, backend=db_url).run(
            timeout=30)
    assert fetch(db_url).run(lambda s: s.scalar(select(func.count()).select_from(FlowRow))) == 0


def test_non_finite_inject_is_refused_at_compile():
    with pytest.raises(exceptions.SerializationError, match="inject= of atom 'u'"):
        compiler.compile(linear_flow.Flow("nan-inject").add(Uses("u", inject={"x": math.inf})))
