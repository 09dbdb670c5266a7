"""The celeryflow exception tree.

Every error celeryflow raises on purpose derives from :class:`CeleryflowError`
(alias :data:`TaskFlowException`, so ported TaskFlow code keeps catching it).
Driver errors (SQLAlchemy, redis, kombu) are converted at the boundary, with
the original exception chained as ``__cause__``.
"""

from __future__ import annotations

import builtins
import io
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from celeryflow.types.failure import Failure


class CeleryflowError(Exception):
    """Base of every error celeryflow raises.

    Args:
        message: what went wrong and what to do about it.
        cause: the underlying exception, if any (also set as ``__cause__``).
    """

    def __init__(self, message: str = "", cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause

    def _get_message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def pformat(self, indent: int = 2, indent_text: str = " ", show_root_class: bool = False) -> str:
        """This error and its chain of causes, one per line (TaskFlow's ``pformat``).

        Args:
            indent: how much deeper each cause is indented.
            indent_text: the text repeated for one level of indentation.
            show_root_class: start with this error's class name.

        Raises:
            ValueError: ``indent`` is negative.
        """
        if indent < 0:
            raise ValueError(f"Provided 'indent' must be greater than or equal to zero instead of {indent}")
        buf = io.StringIO()
        if show_root_class:
            buf.write(f"{type(self).__name__}: ")
        buf.write(self._get_message())
        active = indent
        next_up: BaseException | None = self.cause
        seen: list[BaseException] = []
        while next_up is not None and next_up not in seen:
            seen.append(next_up)
            buf.write(os.linesep)
            if isinstance(next_up, CeleryflowError):
                buf.write(f"{indent_text * active}{type(next_up).__name__}: {next_up._get_message()}")
            else:
                lines = traceback.format_exception_only(type(next_up), next_up)
                buf.write(os.linesep.join(indent_text * active + line.rstrip("\n") for line in lines))
                break  # not ours: its ``cause`` attribute (if any) means nothing to us
            active += indent
            next_up = next_up.cause
        return buf.getvalue()


TaskFlowException = CeleryflowError


def raise_with_cause(exc_cls: type[CeleryflowError], message: str, *args: Any, **kwargs: Any) -> NoReturn:
    """Raise ``exc_cls(message, ...)`` chained to the exception being handled (TaskFlow's helper).

    Raises:
        ValueError: ``exc_cls`` is not a :class:`CeleryflowError` subclass.
    """
    if not (isinstance(exc_cls, type) and issubclass(exc_cls, CeleryflowError)):
        raise ValueError("Subclass of taskflow exception is required")
    if kwargs.get("cause") is None:
        kwargs["cause"] = sys.exc_info()[1]
    raise exc_cls(message, *args, **kwargs)


class StorageFailure(CeleryflowError):
    """The logbook could not be read or written (database unreachable, bad URL...)."""


class StaleRow(StorageFailure):
    """A guarded write found its row changed since the transaction read it (someone else moved first)."""


class BackendClosed(StorageFailure):
    """The logbook backend object was closed: no retry can succeed; fetch a new one."""


class BrokerUnavailable(CeleryflowError):
    """The Celery broker cannot be reached (nothing was sent)."""


class ConfigurationError(CeleryflowError):
    """A setting or argument is invalid."""


class TransportNotInstalled(ConfigurationError):
    """The broker URL names a transport whose Python dependencies are not installed.

    Not a :class:`BrokerUnavailable`: the broker may be up, this process cannot speak
    to it. Nothing was written or sent.

    Attributes:
        module: the top-level module that could not be imported (``"packaging"``).
        extra: what to install, in pip's spelling (``"celeryflow[redis]"``).
    """

    def __init__(self, message: str, module: str, extra: str, cause: BaseException | None = None) -> None:
        super().__init__(message, cause)
        self.module = module
        self.extra = extra


class NotFound(CeleryflowError):
    """A flow, atom, logbook or job that was asked for does not exist."""


class UnknownBackend(StorageFailure, NotFound):
    """A logbook URL names a database celeryflow has no backend for.

    Also a :class:`NotFound`, as TaskFlow raises for a backend it cannot find (scripts
    catch that to fall back to another backend).
    """


class UnknownJobBoard(ConfigurationError, NotFound):
    """A jobboard conf names a kind of board celeryflow does not have (also a :class:`NotFound`, as in TaskFlow)."""


class AlreadyExists(CeleryflowError):
    """Something with the same identity already exists."""


class InvalidState(CeleryflowError):
    """A transition or operation is not allowed in the current state."""


class DependencyFailure(CeleryflowError):
    """The flow's dependencies cannot be satisfied (for example a cycle)."""


class MissingDependencies(DependencyFailure):
    """Atoms require values that nothing provides.

    Attributes:
        missing_requirements: ``{atom name: sorted list of missing names}``.
    """

    def __init__(
        self,
        who: str,
        requirements: Iterable[str] | dict[str, list[str]],
        cause: BaseException | None = None,
        method: str | None = None,
    ) -> None:
        if isinstance(requirements, dict):
            self.missing_requirements: dict[str, list[str]] = {
                k: sorted(v) for k, v in requirements.items()
            }
            parts = [f"{atom!r} needs {names}" for atom, names in sorted(self.missing_requirements.items())]
            detail = "; ".join(parts)
        else:
            names = sorted(requirements)
            self.missing_requirements = {who: names}
            detail = f"{who!r} needs {names}"
        where = f" (for {method})" if method else ""
        message = (
            f"Missing requirements{where}: {detail}. Provide them in the store "
            "(engines.load(flow, store={...})), with inject=, or from an earlier atom's provides="
        )
        super().__init__(message, cause)


class AmbiguousDependency(DependencyFailure):
    """Two atoms in one graph flow provide the same name."""


class Duplicate(CeleryflowError):
    """Two atoms (or flows) in one flow share a name."""


class NotRegistered(CeleryflowError):
    """A spec or message names an atom class, function or factory this process does not have registered."""


class AtomCodeMissing(NotRegistered):
    """A worker does not have the code of an atom it was sent (a rolling deploy, a missing CELERYFLOW_IMPORTS).

    A deployment error, not the atom's: the atom waits, queued, for a worker that has its
    code, and fails with this exception only after ``CELERYFLOW_MISSING_CODE_TIMEOUT``
    seconds. It never ran, so its revert is never called.
    """


class CorruptSpec(NotRegistered):
    """A flow's stored spec cannot be decoded (not JSON, wrong shape, unknown version).

    The flow can never run anywhere: the first worker, sweep or engine that reads the
    spec fails the flow with this error as its reason.
    """


class SerializationError(CeleryflowError):
    """A value is not JSON-serializable (celeryflow never pickles)."""


class ResultTooLarge(SerializationError):
    """An atom result or store value exceeds the configured size limit."""


class MessageTooLarge(SerializationError):
    """A compressed message would expand beyond the worker's bound (celeryflow.decompression)."""


class Timeout(CeleryflowError):
    """An operation did not finish in the allotted time."""


class JobFailure(CeleryflowError):
    """A jobboard operation failed (for example consume by a non-owner)."""


class UnclaimableJob(JobFailure):
    """A job cannot be claimed (already claimed by another owner, or gone)."""


class ExecutionFailure(CeleryflowError):
    """An atom failed in a way that has no original exception to re-raise."""


# TaskFlow's remaining exception names, so ported ``except exceptions.X:`` clauses resolve.


class ConductorFailure(CeleryflowError):
    """A conductor failed to dispatch, run or finish a job."""


class RequestTimeout(ExecutionFailure, Timeout):
    """A request to a remote worker was not answered in time (TaskFlow's worker-based engine)."""


class CompilationFailure(CeleryflowError):
    """A flow cannot be compiled into something an engine can run."""


class IncompatibleVersion(CeleryflowError):
    """Something was written by an incompatible version (a spec, a schema)."""


class Empty(CeleryflowError):
    """Something that must not be empty is (a flow with no atoms where one is needed)."""


class MultipleChoices(CeleryflowError):
    """Several things match where one was expected."""


class InvalidFormat(CeleryflowError):
    """An object or entity is not in the expected format."""


class DisallowedAccess(CeleryflowError):
    """Storage cannot be accessed in the current state.

    Attributes:
        state: the state that forbids the access, if known.
    """

    def __init__(self, message: str = "", cause: BaseException | None = None, state: str | None = None) -> None:
        super().__init__(message, cause)
        self.state = state


class NotImplementedError(builtins.NotImplementedError):
    """A feature of the library itself is not implemented (TaskFlow's own ``NotImplementedError``)."""


class WorkerLost(ExecutionFailure):
    """The worker running an atom died too many times (a poison atom)."""


class StaleMessage(CeleryflowError):
    """A message belongs to an older epoch of its flow (fenced off) or was already handled."""


class WrappedFailure(CeleryflowError):
    """Several failures (or one that cannot be re-raised as its own type).

    Iterate it to get the :class:`~celeryflow.types.failure.Failure` objects.
    """

    def __init__(self, causes: Sequence[Failure]) -> None:
        self._causes: list[Failure] = []
        for cause in causes:
            if isinstance(cause, WrappedFailure):
                self._causes.extend(cause)
            else:
                self._causes.append(cause)
        summary = "; ".join(
            f"{c.exception_type_names[0] if c.exception_type_names else '?'}: {c.exception_str}" for c in self._causes
        )
        super().__init__(f"WrappedFailure: [{summary}]")

    def __len__(self) -> int:
        return len(self._causes)

    def __iter__(self) -> Iterator[Failure]:
        return iter(self._causes)

    def __getitem__(self, index: int) -> Failure:
        return self._causes[index]

    def check(self, *exc_classes: Any) -> Any:
        """Return the first matching exception class (or name) among the wrapped failures, else None."""
        if not exc_classes:
            return None
        for cause in self:
            result = cause.check(*exc_classes)
            if result is not None:
                return result
        return None

    def __str__(self) -> str:
        return f"WrappedFailure: {[str(c) for c in self._causes]}"


__all__ = [
    "AlreadyExists",
    "AmbiguousDependency",
    "AtomCodeMissing",
    "BackendClosed",
    "BrokerUnavailable",
    "CeleryflowError",
    "CompilationFailure",
    "ConductorFailure",
    "ConfigurationError",
    "CorruptSpec",
    "DependencyFailure",
    "DisallowedAccess",
    "Duplicate",
    "Empty",
    "ExecutionFailure",
    "IncompatibleVersion",
    "InvalidFormat",
    "InvalidState",
    "JobFailure",
    "MessageTooLarge",
    "MissingDependencies",
    "MultipleChoices",
    "NotFound",
    "NotImplementedError",
    "NotRegistered",
    "RequestTimeout",
    "ResultTooLarge",
    "SerializationError",
    "StaleRow",
    "StaleMessage",
    "StorageFailure",
    "TaskFlowException",
    "Timeout",
    "UnclaimableJob",
    "UnknownBackend",
    "UnknownJobBoard",
    "WorkerLost",
    "WrappedFailure",
    "raise_with_cause",
]
