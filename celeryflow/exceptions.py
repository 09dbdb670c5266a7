"""The celeryflow exception tree.

Every error celeryflow raises on purpose derives from :class:`CeleryflowError`
(alias :data:`TaskFlowException`, so ported TaskFlow code keeps catching it).
Driver errors (SQLAlchemy, redis, kombu) are converted at the boundary, with
the original exception chained as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

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


TaskFlowException = CeleryflowError


class StorageFailure(CeleryflowError):
    """The logbook could not be read or written (database unreachable, bad URL...)."""


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


class Timeout(CeleryflowError):
    """An operation did not finish in the allotted time."""


class JobFailure(CeleryflowError):
    """A jobboard operation failed (for example consume by a non-owner)."""


class UnclaimableJob(JobFailure):
    """A job cannot be claimed (already claimed by another owner, or gone)."""


class ExecutionFailure(CeleryflowError):
    """An atom failed in a way that has no original exception to re-raise."""


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
    "BrokerUnavailable",
    "CeleryflowError",
    "ConfigurationError",
    "CorruptSpec",
    "DependencyFailure",
    "Duplicate",
    "ExecutionFailure",
    "InvalidState",
    "JobFailure",
    "MissingDependencies",
    "NotFound",
    "NotRegistered",
    "ResultTooLarge",
    "SerializationError",
    "StaleMessage",
    "StorageFailure",
    "TaskFlowException",
    "Timeout",
    "UnclaimableJob",
    "WorkerLost",
    "WrappedFailure",
]
