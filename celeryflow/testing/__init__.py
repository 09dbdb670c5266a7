"""Testing your own flows: fixtures, failure and crash injection, the compensation check, explain.

::

    from celeryflow.testing import FlowRunner, fail_after, crash_after, for_each_failure_point, explain

The pytest fixtures live in :mod:`celeryflow.testing.plugin` (opt in with ``-p
celeryflow.testing.plugin``, ``pytest --celeryflow`` or ``celeryflow = true`` in the ini
file); docs/testing.md is the guide. Names are imported lazily: importing this package
costs nothing (the ``pytest11`` entry module lives here).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeryflow.testing.check import (
        CompensationBroken,
        FailurePoints,
        PointResult,
        compensation_problems,
        for_each_failure_point,
    )
    from celeryflow.testing.explanation import Explanation, explain
    from celeryflow.testing.inject import (
        CrashPoint,
        Fault,
        InjectedFailure,
        crash_after,
        fail_after,
        fail_before,
        fail_revert,
    )
    from celeryflow.testing.outcome import Outcome
    from celeryflow.testing.runner import Crashed, CrashNotReached, FlowRunner

_WHERE = {
    "CompensationBroken": "check", "FailurePoints": "check", "PointResult": "check",
    "compensation_problems": "check", "for_each_failure_point": "check",
    "Explanation": "explanation", "explain": "explanation",
    "CrashPoint": "inject", "Fault": "inject", "InjectedFailure": "inject", "crash_after": "inject",
    "fail_after": "inject", "fail_before": "inject", "fail_revert": "inject",
    "Outcome": "outcome",
    "CrashNotReached": "runner", "Crashed": "runner", "FlowRunner": "runner",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'celeryflow.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"celeryflow.testing.{module}"), name)


__all__ = [
    "CompensationBroken",
    "CrashNotReached",
    "CrashPoint",
    "Crashed",
    "Explanation",
    "FailurePoints",
    "Fault",
    "FlowRunner",
    "InjectedFailure",
    "Outcome",
    "PointResult",
    "compensation_problems",
    "crash_after",
    "explain",
    "fail_after",
    "fail_before",
    "fail_revert",
    "for_each_failure_point",
]
