"""Failure.recreate builds only what a logbook row may safely name.

A logbook row is data anyone with write access to the database can forge. Rebuilding
it must not (a) hand back a BaseException that is not an Exception (a forged
``SystemExit`` would pass ``except Exception`` in a conductor or a view and stop the
process), nor (b) run code while looking the name up: a module's lazy ``__getattr__``
(PEP 562) may import modules, and dunder/underscore attributes reach internals.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from celeryflow.exceptions import WrappedFailure
from celeryflow.types.failure import Failure


def _forged(type_name: str, *args: object) -> Failure:
    """What Failure.from_dict builds from a row someone wrote by hand."""
    return Failure.from_dict({"exc_type_names": [type_name, "builtins.BaseException"], "exc_args": list(args),
                              "exception_str": " ".join(map(str, args)), "traceback_str": ""})


class Outer:
    class InnerError(Exception):
        pass


class _PrivateError(Exception):
    pass


class Fatal(BaseException):
    """A BaseException that is not an Exception, defined by some library."""


@pytest.mark.parametrize("name", ["builtins.SystemExit", "builtins.KeyboardInterrupt", "builtins.GeneratorExit",
                                  f"{__name__}.Fatal"])
def test_a_forged_base_exception_is_not_rebuilt(name):
    failure = _forged(name, 0)
    assert failure.recreate() is None
    with pytest.raises(WrappedFailure):  # an Exception: `except Exception` still catches it
        failure.reraise()


@pytest.fixture
def lazy_module() -> Iterator[tuple[str, list[str]]]:
    """A loaded module with a PEP 562 ``__getattr__`` that would import on demand."""
    name = "celeryflow_test_lazy_module"
    module = types.ModuleType(name)
    asked: list[str] = []

    def __getattr__(attr: str) -> object:
        asked.append(attr)
        return ValueError  # what an on-demand import would have produced

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = module
    try:
        yield name, asked
    finally:
        del sys.modules[name]


def test_lazy_module_getattr_is_never_called(lazy_module):
    name, asked = lazy_module
    assert _forged(f"{name}.LazyError", "x").recreate() is None
    assert _forged(f"{name}.Outer.InnerError", "x").recreate() is None
    assert asked == []


@pytest.mark.parametrize("name", [f"{__name__}._PrivateError", f"{__name__}.Outer.__class__",
                                  f"{__name__}.__builtins__.SystemExit", "builtins.__loader__"])
def test_underscore_names_are_not_walked(name):
    assert _forged(name, "x").recreate() is None


def test_ordinary_exceptions_still_come_back():
    again = _forged("builtins.ValueError", "bad").recreate()
    assert type(again) is ValueError and again.args == ("bad",)
    nested = _forged(f"{__name__}.Outer.InnerError", "deep").recreate()
    assert type(nested) is Outer.InnerError and str(nested) == "deep"
    with pytest.raises(KeyError):
        _forged("builtins.KeyError", "k").reraise()


def test_a_forged_system_exit_row_in_the_logbook_comes_back_wrapped(db_url):
    """The same through a real logbook row on every database: what a conductor or a view reads."""
    from celeryflow import states
    from celeryflow.persistence import backends, models

    backend = backends.fetch(db_url)
    book, fd, atom = models.LogBook("forged"), models.FlowDetail("f"), models.TaskDetail("a")
    atom.put(states.FAILURE, _forged("builtins.SystemExit", 0))
    fd.add(atom)
    book.add(fd)
    backend.save_logbook(book)
    read = backend.get_flow_details(fd.uuid).find_by_name("a")
    assert read is not None and read.failure is not None
    assert read.failure.exception_type_names[0] == "builtins.SystemExit"
    with pytest.raises(WrappedFailure):
        read.failure.reraise()
