"""Retry controllers (TaskFlow's ``retry`` module).

A flow may carry a retry controller (``linear_flow.Flow("f", retry=Times(3))``).
It runs before the flow's atoms; when one of them fails, the nearest enclosing
controller's :meth:`Retry.on_failure` decides: :data:`RETRY` (revert the
subflow and run it again), :data:`REVERT` (revert the subflow and hand the
failure to the enclosing controller) or :data:`REVERT_ALL` (revert the whole
flow).

celeryflow extension: controllers accept ``delay`` (seconds) and ``backoff``
(factor); :meth:`Retry.countdown` gives the wait before a given attempt.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from celeryflow.atom import Atom
from celeryflow.exceptions import NotFound
from celeryflow.types.failure import Failure

RETRY: Final = "RETRY"
REVERT: Final = "REVERT"
REVERT_ALL: Final = "REVERT_ALL"

#: The name of the argument retry controllers receive their history in.
EXECUTE_REVERT_HISTORY: Final = "history"


class Decision(str, enum.Enum):
    """What a controller decides on failure (members equal the plain strings)."""

    RETRY = RETRY
    REVERT = REVERT
    REVERT_ALL = REVERT_ALL

    def __str__(self) -> str:
        return self.value


class History:
    """What a controller tried so far: ``[(provided value, {atom name: Failure}), ...]``.

    Args:
        contents: the attempts, oldest first.
        failure: the controller's own failure, if it failed itself.
    """

    def __init__(
        self,
        contents: Iterable[tuple[Any, Mapping[str, Failure]]] | None = None,
        failure: Failure | None = None,
    ) -> None:
        self._contents: list[tuple[Any, dict[str, Failure]]] = [
            (provided, dict(outcomes)) for provided, outcomes in (contents or ())
        ]
        self._failure = failure

    @property
    def failure(self) -> Failure | None:
        """The controller's own failure (None when it did not fail itself)."""
        return self._failure

    @property
    def failures(self) -> list[tuple[str, Failure]]:
        """Every ``(atom name, Failure)`` of every attempt, oldest first."""
        return list(self.outcomes_iter())

    def outcomes_iter(self, index: int | None = None) -> Iterator[tuple[str, Failure]]:
        """``(atom name, Failure)`` pairs of all attempts, or of attempt ``index``."""
        contents = self._contents if index is None else [self._contents[index]]
        for _provided, outcomes in contents:
            yield from outcomes.items()

    def provided_iter(self) -> Iterator[Any]:
        """The values the controller provided, in order of attempts."""
        for provided, _outcomes in self._contents:
            yield provided

    def caused_by(self, exception_cls: type[BaseException] | str, index: int | None = None,
                  include_retry: bool = False) -> bool:
        """True when a failure (of attempt ``index``, or any) is of ``exception_cls``."""
        for _name, failure in self.outcomes_iter(index=index):
            if failure.check(exception_cls):
                return True
        return bool(include_retry and self._failure is not None and self._failure.check(exception_cls))

    def __len__(self) -> int:
        return len(self._contents)

    def __iter__(self) -> Iterator[tuple[Any, dict[str, Failure]]]:
        return iter(self._contents)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Failure]]:
        return self._contents[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return self._contents == other._contents and self._failure == other._failure

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({self._contents!r}, failure={self._failure!r})"

    def to_list(self) -> list[list[Any]]:
        """JSON form: ``[[provided, {atom name: Failure.to_dict()}], ...]``."""
        return [
            [provided, {name: f.to_dict() for name, f in outcomes.items()}]
            for provided, outcomes in self._contents
        ]

    @classmethod
    def from_list(cls, data: Iterable[Sequence[Any]] | None, failure: Failure | None = None) -> History:
        """Inverse of :meth:`to_list` (``failure`` is the controller's own failure, if any)."""
        contents = [
            (item[0], {name: Failure.from_dict(f) for name, f in (item[1] or {}).items()})
            for item in (data or ())
        ]
        return cls(contents, failure)


class Retry(Atom):
    """Base of retry controllers: ``execute(history, ...)`` provides a value to the subflow.

    Args:
        name: the controller's atom name; a flow names an unnamed controller
            ``"<flow name>_retry"`` (as TaskFlow does).
        provides: what the value returned by ``execute`` provides.
        requires: extra required symbols.
        auto_extract: infer requirements from ``execute`` (``history`` excluded).
        rebind: as for tasks.
        inject: as for tasks.
        delay: seconds to wait before re-running the subflow (celeryflow extension).
        backoff: factor applied to ``delay`` for each further attempt.
    """

    default_provides: Any = None

    def __init__(
        self,
        name: str | None = None,
        provides: Any = None,
        requires: Any = None,
        auto_extract: bool = True,
        rebind: Any = None,
        inject: Mapping[str, Any] | None = None,
        *,
        delay: float = 0.0,
        backoff: float = 1.0,
    ) -> None:
        if delay < 0 or backoff <= 0:
            raise ValueError("delay must be >= 0 and backoff > 0")
        self.delay = float(delay)
        self.backoff = float(backoff)
        super().__init__(
            name=name,
            provides=provides,
            requires=requires,
            auto_extract=auto_extract,
            rebind=rebind,
            inject=inject,
            ignore_list=[EXECUTE_REVERT_HISTORY],
        )

    def countdown(self, attempt: int) -> float:
        """Seconds to wait before re-running the subflow after its ``attempt``-th failure.

        ``attempt`` is ``len(history)`` when the controller decided RETRY (1 for the
        first retry): ``delay * backoff ** (attempt - 1)``; 0 when ``attempt < 1``.
        """
        if attempt < 1 or self.delay <= 0:
            return 0.0
        return self.delay * self.backoff ** (attempt - 1)

    def execute(self, history: History, *args: Any, **kwargs: Any) -> Any:
        """Return the value the subflow gets for this attempt."""
        raise NotImplementedError(f"{type(self).__qualname__} must define execute(history, ...)")

    def revert(self, history: History, *args: Any, **kwargs: Any) -> Any:
        """Undo what :meth:`execute` did; the default does nothing."""

    def on_failure(self, history: History, *args: Any, **kwargs: Any) -> str:
        """Decide: :data:`RETRY`, :data:`REVERT` or :data:`REVERT_ALL`."""
        raise NotImplementedError(f"{type(self).__qualname__} must define on_failure(history, ...)")


class AlwaysRevert(Retry):
    """Never retries: reverts its subflow and hands the failure outwards."""

    def on_failure(self, history: History, *args: Any, **kwargs: Any) -> str:
        return REVERT

    def execute(self, history: History, *args: Any, **kwargs: Any) -> Any:
        return None


class AlwaysRevertAll(Retry):
    """Never retries: reverts the whole flow."""

    def on_failure(self, history: History, *args: Any, **kwargs: Any) -> str:
        return REVERT_ALL

    def execute(self, history: History, *args: Any, **kwargs: Any) -> Any:
        return None


class ExhaustibleRetry(Retry):
    """A controller that retries until it runs out, then reverts its subflow (or, with
    ``revert_all``, the whole flow): the shared base of :class:`Times` and the ForEach family."""

    def __init__(
        self,
        name: str | None = None,
        provides: Any = None,
        requires: Any = None,
        auto_extract: bool = True,
        rebind: Any = None,
        revert_all: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, provides, requires, auto_extract, rebind, **kwargs)
        self._revert_action = REVERT_ALL if revert_all else REVERT


class Times(ExhaustibleRetry):
    """Run the subflow up to ``attempts`` times; provides the attempt number (1, 2, ...).

    Args:
        attempts: how many times the subflow may run in all.
        revert_all: when exhausted, revert the whole flow instead of just the subflow.
    """

    def __init__(
        self,
        attempts: int = 1,
        name: str | None = None,
        provides: Any = None,
        requires: Any = None,
        auto_extract: bool = True,
        rebind: Any = None,
        revert_all: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, provides, requires, auto_extract, rebind, revert_all, **kwargs)
        self._attempts = int(attempts)

    @property
    def attempts(self) -> int:
        return self._attempts

    def on_failure(self, history: History, *args: Any, **kwargs: Any) -> str:
        if len(history) < self._attempts:
            return RETRY
        return self._revert_action

    def execute(self, history: History, *args: Any, **kwargs: Any) -> int:
        return len(history) + 1


class ForEachBase(ExhaustibleRetry):
    """Tries values one after the other (base of :class:`ForEach` and :class:`ParameterizedForEach`)."""

    def _get_next_value(self, values: Iterable[Any], history: History) -> Any:
        tried = list(history.provided_iter())
        for value in values:
            if value not in tried:
                return value
        raise NotFound(f"No elements left in collection of iterable retry controller {self.name!r}")

    def _on_failure(self, values: Iterable[Any], history: History) -> str:
        try:
            self._get_next_value(values, history)
        except NotFound:
            return self._revert_action
        return RETRY


class ForEach(ForEachBase):
    """Run the subflow once per value of ``values`` until it succeeds; provides the value tried.

    Args:
        values: the values to try, in order.
        revert_all: when all values failed, revert the whole flow.
    """

    def __init__(
        self,
        values: Iterable[Any],
        name: str | None = None,
        provides: Any = None,
        requires: Any = None,
        auto_extract: bool = True,
        rebind: Any = None,
        revert_all: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, provides, requires, auto_extract, rebind, revert_all, **kwargs)
        self._values = list(values)

    @property
    def values(self) -> list[Any]:
        return list(self._values)

    def on_failure(self, history: History, *args: Any, **kwargs: Any) -> str:
        return self._on_failure(self._values, history)

    def execute(self, history: History, *args: Any, **kwargs: Any) -> Any:
        return self._get_next_value(self._values, history)


class ParameterizedForEach(ForEachBase):
    """Like :class:`ForEach`, with the values taken from the store (``values`` requirement)."""

    def on_failure(self, history: History, values: Iterable[Any], *args: Any, **kwargs: Any) -> str:
        return self._on_failure(values, history)

    def execute(self, history: History, values: Iterable[Any], *args: Any, **kwargs: Any) -> Any:
        return self._get_next_value(values, history)


__all__ = [
    "EXECUTE_REVERT_HISTORY",
    "REVERT",
    "REVERT_ALL",
    "RETRY",
    "AlwaysRevert",
    "AlwaysRevertAll",
    "Decision",
    "ForEach",
    "ForEachBase",
    "History",
    "ParameterizedForEach",
    "Retry",
    "Times",
]
