"""Atoms and flow factories for the porting tests (module level: registered by name)."""

from __future__ import annotations

from typing import Any

from celeryflow import retry, task
from celeryflow.patterns import linear_flow


class Hi(task.Task):
    default_provides = "hi"

    def execute(self) -> str:
        return "hi"


class Echo(task.Task):
    """Returns what it was given as ``value``."""

    default_provides = "echoed"

    def execute(self, value: Any) -> Any:
        return value


class AddOne(task.Task):
    default_provides = "plus_one"

    def execute(self, hi: str) -> int:
        return len(hi) + 1


class Boom(task.Task):
    def execute(self, hi: str) -> None:
        raise ValueError(f"boom after {hi}")

    def revert(self, hi: str, **kwargs: Any) -> None:
        assert task.REVERT_RESULT in kwargs
        assert task.REVERT_FLOW_FAILURES in kwargs


class FailOnce(task.Task):
    """Fails the first attempt (``attempt`` 1) and succeeds after."""

    default_provides = "done"

    def execute(self, attempt: int) -> int:
        if attempt < 2:
            raise RuntimeError("first attempt fails")
        return attempt


def make_hello(boom: bool = False) -> linear_flow.Flow:
    flow = linear_flow.Flow("hello")
    flow.add(Hi(), Boom() if boom else AddOne())
    return flow


def make_retrying() -> linear_flow.Flow:
    return linear_flow.Flow("retrying", retry=retry.Times(3, provides="attempt")).add(FailOnce())
