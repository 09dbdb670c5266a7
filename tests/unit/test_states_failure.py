"""State machines as data, JSON codec, Failure across a process hop."""

from __future__ import annotations

import datetime as dt
import decimal
import subprocess
import sys
import uuid

import pytest

from celeryflow import exceptions, serialization, states
from celeryflow.types.failure import Failure


@pytest.mark.parametrize("old,new", [(states.PENDING, states.RUNNING), (states.RUNNING, states.SUCCESS),
                                     (states.SUCCESS, states.REVERTING), (states.REVERTING, states.REVERTED),
                                     (states.REVERTING, states.REVERT_FAILURE), (states.PENDING, states.IGNORE)])
def test_allowed_atom_transitions(old, new):
    states.check_atom_transition(old, new)


@pytest.mark.parametrize("old,new", [(states.PENDING, states.SUCCESS), (states.SUCCESS, states.RUNNING),
                                     (states.REVERTED, states.SUCCESS), (states.IGNORE, states.RUNNING),
                                     (states.PENDING, states.REVERTING)])
def test_forbidden_atom_transitions(old, new):
    with pytest.raises(exceptions.InvalidState, match=f"{old} -> {new}"):
        states.check_atom_transition(old, new)


@pytest.mark.parametrize("old,new", [(states.SUCCESS, states.RUNNING), (states.PENDING, states.SUCCESS),
                                     (states.REVERTED, states.SUCCESS), (states.SUSPENDED, states.SUCCESS)])
def test_forbidden_flow_transitions(old, new):
    with pytest.raises(exceptions.InvalidState):
        states.check_flow_transition(old, new)


def test_every_transition_stays_inside_the_state_sets():
    for new in states.ATOM_STATES:
        assert states.atom_sources(new) <= states.ATOM_STATES
    for new in states.FLOW_STATES:
        assert states.flow_sources(new) <= states.FLOW_STATES
    assert states.flow_sources(states.SUCCESS) == {states.RUNNING, states.SUSPENDING}


def test_json_codec_round_trips_extended_types():
    value = {"when": dt.datetime(2026, 1, 2, 3, 4, 5), "id": uuid.UUID(int=7), "money": decimal.Decimal("1.10"),
             "blob": b"\x00\xff", "nested": [1, "two", None, True]}
    assert serialization.loads(serialization.dumps(value)) == value


def test_json_codec_names_the_culprit():
    with pytest.raises(exceptions.SerializationError, match=r"result of atom 'x'\['k'\]\[1\] is a set"):
        serialization.dumps({"k": [1, {2}]}, "result of atom 'x'")


class LocalError(Exception):
    pass


def test_failure_keeps_type_message_and_traceback():
    try:
        raise LocalError("boom", 42)
    except LocalError:
        failure = Failure()
    data = serialization.loads(serialization.dumps(failure.to_dict()))
    again = Failure.from_dict(data)
    assert again.check(LocalError) is LocalError
    assert again.exception_str == "('boom', 42)"
    assert "raise LocalError" in again.traceback_str
    with pytest.raises(LocalError) as info:
        again.reraise()
    assert info.value.args == ("boom", 42)


def test_failure_of_an_unloaded_type_is_wrapped_and_never_imported():
    data = {"exc_type_names": ["not_a_real_module_xyz.Boom", "builtins.Exception"], "exc_args": ["x"],
            "exception_str": "x", "traceback_str": ""}
    with pytest.raises(exceptions.WrappedFailure) as info:
        Failure.from_dict(data).reraise()
    assert info.value.check("builtins.Exception") == "builtins.Exception"
    assert "not_a_real_module_xyz" not in sys.modules


def test_failure_crosses_a_process_hop():
    code = ("import json, celeryflow.serialization as s\nfrom celeryflow.types.failure import Failure\n"
            "try:\n    raise KeyError('missing-key')\nexcept KeyError:\n    print(s.dumps(Failure().to_dict()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    with pytest.raises(KeyError, match="missing-key"):
        Failure.from_dict(serialization.loads(out)).reraise()
