"""Tasks: atoms that execute and revert (TaskFlow's ``task`` module).

Subclass :class:`Task` and define ``execute(self, <inputs>)`` and optionally
``revert(self, <inputs>, result, flow_failures, **kwargs)``; or wrap plain
functions with :class:`FunctorTask`, :class:`MapFunctorTask` and
:class:`ReduceFunctorTask`.

Revert is called with the keyword arguments ``result`` (the execute result, or
the :class:`~celeryflow.types.failure.Failure` when execute failed) and
``flow_failures`` (``{atom name: Failure}``), so a ``revert`` must accept them
(by name or with ``**kwargs``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from celeryflow.atom import Atom, callable_name, callable_params, class_name
from celeryflow.types.notifier import Notifier

if TYPE_CHECKING:
    from celeryflow.celery_task import CeleryTask

#: Event a task's own :attr:`Task.notifier` emits on :meth:`Task.update_progress`.
EVENT_UPDATE_PROGRESS = "update_progress"

#: the keyword ``revert`` receives the execute result (or its Failure) under (TaskFlow's name)
REVERT_RESULT = "result"

#: the keyword ``revert`` receives ``{atom name: Failure}`` under (TaskFlow's name)
REVERT_FLOW_FAILURES = "flow_failures"


class Task(Atom):
    """An atom that executes and can be reverted.

    Args:
        name: unique name in the flow; defaults to ``module.QualName`` of the class.
        provides: what the result provides (str, tuple/list or set); defaults to
            ``default_provides``.
        requires: extra required symbols (passed as keyword arguments).
        rebind: ``{param: symbol}`` or a list mapped onto the parameters in order.
        inject: values for this task only (JSON).
        revert_rebind: rebind for ``revert`` (defaults to ``rebind``).
        revert_requires: extra requirements of ``revert`` (defaults to ``requires``).
        auto_extract: infer requirements from the signatures (default True).
    """

    def __init__(
        self,
        name: str | None = None,
        provides: Any = None,
        requires: Any = None,
        rebind: Any = None,
        inject: Mapping[str, Any] | None = None,
        revert_rebind: Any = None,
        revert_requires: Any = None,
        auto_extract: bool = True,
    ) -> None:
        if name is None:
            name = class_name(self)
        super().__init__(
            name=name,
            provides=provides,
            requires=requires,
            auto_extract=auto_extract,
            rebind=rebind,
            inject=inject,
            revert_rebind=revert_rebind,
            revert_requires=revert_requires,
        )

    @property
    def notifier(self) -> Notifier:
        """Task-local notifier (``update_progress`` events), as in TaskFlow."""
        notifier: Notifier | None = self.__dict__.get("_notifier")
        if notifier is None:
            notifier = self.__dict__.setdefault("_notifier", Notifier())
        return notifier

    def update_progress(self, progress: float, **details: Any) -> None:
        """Report progress (clamped to [0, 1]); the engine records and notifies it."""
        value = self._report_progress(progress, details or None)
        notifier: Notifier | None = self.__dict__.get("_notifier")
        if notifier is not None:
            notifier.notify(EVENT_UPDATE_PROGRESS, {"progress": value, **details})

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        """Undo what :meth:`execute` did; the default does nothing."""


def _check_callable(function: Any, what: str) -> None:
    if not callable(function):
        raise ValueError(f"Function to use for {what} must be callable")


class FunctorTask(Task):
    """A task made of plain functions.

    Args:
        execute: the function to run; its signature gives the requirements.
        name: defaults to the function's ``module.qualname``.
        revert: optional function taking the same inputs plus ``result`` and
            ``flow_failures`` (by name or ``**kwargs``).
        version: optional version (tuple or str).

    Other arguments as for :class:`Task`.
    """

    def __init__(
        self,
        execute: Callable[..., Any],
        name: str | None = None,
        provides: Any = None,
        requires: Any = None,
        auto_extract: bool = True,
        rebind: Any = None,
        revert: Callable[..., Any] | None = None,
        version: Any = None,
        inject: Mapping[str, Any] | None = None,
        revert_rebind: Any = None,
        revert_requires: Any = None,
    ) -> None:
        _check_callable(execute, "executing")
        if revert is not None:
            _check_callable(revert, "reverting")
        if name is None:
            name = callable_name(execute)
        self._execute = execute
        self._revert = revert
        super().__init__(name=name, provides=provides, inject=inject, auto_extract=False)
        if version is not None:
            self.version = version
        self._set_mappings(
            execute, revert, requires, rebind, auto_extract, [], revert_requires, revert_rebind
        )

    @property
    def execute_function(self) -> Callable[..., Any]:
        return self._execute

    @property
    def revert_function(self) -> Callable[..., Any] | None:
        return self._revert

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self._execute(*args, **kwargs)

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        if self._revert is None:
            return None
        _, _, var_kw = callable_params(self._revert)
        if not var_kw:
            # Let a revert function name only what it needs of result/flow_failures.
            accepted = set(callable_params(self._revert)[0])
            kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        return self._revert(*args, **kwargs)


def _check_requires(requires: Any, at_least: int) -> list[str]:
    if isinstance(requires, str) or not isinstance(requires, Iterable):
        raise TypeError(
            f"{type(requires).__name__} type was provided for requires. Requires must be an iterable."
        )
    names = [str(r) for r in requires]
    if len(names) < at_least:
        raise ValueError(f"requires needs at least {at_least} names, got {len(names)}")
    return names


class _CollectionFunctorTask(Task):
    def __init__(
        self,
        functor: Callable[..., Any],
        requires: Any,
        arity: int,
        at_least: int,
        name: str | None,
        provides: Any,
        auto_extract: bool,
        rebind: Any,
        inject: Mapping[str, Any] | None,
    ) -> None:
        _check_callable(functor, "the functor")
        count = len(callable_params(functor)[0])
        if count != arity:
            raise ValueError(
                f"{count} arguments were provided. The functor must take exactly {arity} argument(s)."
            )
        names = _check_requires(requires, at_least)
        if name is None:
            name = callable_name(functor)
        self._functor = functor
        super().__init__(name=name, provides=provides, requires=names, rebind=rebind, inject=inject,
                         auto_extract=auto_extract)
        self._params = list(self.rebind)

    @property
    def functor(self) -> Callable[..., Any]:
        return self._functor

    def _values(self, kwargs: dict[str, Any]) -> list[Any]:
        # In declaration order, whatever order the engine passes keyword arguments in.
        return [kwargs[p] for p in self._params if p in kwargs]


class MapFunctorTask(_CollectionFunctorTask):
    """Apply a one-argument ``functor`` to each required value; the result is the list of outputs.

    Args:
        functor: a function of one argument.
        requires: the names of the values to map over (an iterable of str).
    """

    def __init__(
        self,
        functor: Callable[[Any], Any],
        requires: Any,
        name: str | None = None,
        provides: Any = None,
        auto_extract: bool = True,
        rebind: Any = None,
        inject: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(functor, requires, 1, 0, name, provides, auto_extract, rebind, inject)

    def execute(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [self._functor(value) for value in self._values(kwargs)]


class ReduceFunctorTask(_CollectionFunctorTask):
    """``functools.reduce`` a two-argument ``functor`` over the required values (at least two).

    Args:
        functor: a function of two arguments.
        requires: the names of the values to reduce, in order.
    """

    def __init__(
        self,
        functor: Callable[[Any, Any], Any],
        requires: Any,
        name: str | None = None,
        provides: Any = None,
        auto_extract: bool = True,
        rebind: Any = None,
        inject: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(functor, requires, 2, 2, name, provides, auto_extract, rebind, inject)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return functools.reduce(self._functor, self._values(kwargs))




def __getattr__(name: str) -> Any:
    # celeryflow.task.CeleryTask: defined in its own module, which imports this one
    if name == "CeleryTask":
        from celeryflow.celery_task import CeleryTask

        return CeleryTask
    raise AttributeError(name)


__all__ = [
    "EVENT_UPDATE_PROGRESS",
    "REVERT_FLOW_FAILURES",
    "REVERT_RESULT",
    "CeleryTask",
    "FunctorTask",
    "MapFunctorTask",
    "ReduceFunctorTask",
    "Task",
]
