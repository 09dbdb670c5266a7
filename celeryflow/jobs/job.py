"""Jobs (TaskFlow's ``taskflow.jobs.base.Job``) and their priorities."""

from __future__ import annotations

import datetime as dt
import enum
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celeryflow import states
from celeryflow.exceptions import ConfigurationError, NotFound

if TYPE_CHECKING:
    from celeryflow.jobs.backends.base import JobBoard
    from celeryflow.persistence.models import LogBook


class JobPriority(enum.Enum):
    """How urgent a job is: boards hand out higher priorities first, FIFO within one."""

    VERY_HIGH = "VERY_HIGH"
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"
    VERY_LOW = "VERY_LOW"

    @property
    def rank(self) -> int:
        """0 for VERY_HIGH … 4 for VERY_LOW: what boards sort by."""
        return _RANKS[self]

    @classmethod
    def from_rank(cls, rank: int) -> JobPriority:
        try:
            return _BY_RANK[int(rank)]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{rank!r} is not a job priority rank (0..4)") from None

    @classmethod
    def convert(cls, value: JobPriority | str | None) -> JobPriority:
        """A member, or its name (case-insensitive); ``None`` is NORMAL.

        Raises:
            ConfigurationError: anything else (the message lists the names).
        """
        if value is None:
            return cls.NORMAL
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        names = ", ".join(m.name for m in cls)
        raise ConfigurationError(f"Unknown job priority {value!r}: use a JobPriority member or one of {names}")

    @classmethod
    def reorder(cls, *values: tuple[JobPriority, Any]) -> list[tuple[JobPriority, Any]]:
        """Sort ``(priority, item)`` pairs, highest priority first, stable within a priority."""
        return sorted(values, key=lambda pair: pair[0].rank)


_RANKS = {p: i for i, p in enumerate(JobPriority)}
_BY_RANK = {i: p for p, i in _RANKS.items()}


class Job:
    """A unit of work on a board.

    Attributes:
        uuid: the job's id.
        name: a human-readable name.
        details: a JSON dict (``flow_uuid``, ``store``, anything the poster adds).
        priority: a :class:`JobPriority`.
        created_on: when it was posted (naive UTC).
        flow_uuid: the flow the job runs (``post_flow`` sets it; ``details['flow_uuid']``).
        book_uuid, book_name: the logbook posted with the job, if any.
        board: the board the job was read from.
    """

    def __init__(
        self,
        board: JobBoard,
        uuid: str,
        name: str,
        *,
        details: Mapping[str, Any] | None = None,
        priority: JobPriority = JobPriority.NORMAL,
        created_on: dt.datetime | None = None,
        flow_uuid: str | None = None,
        book_uuid: str | None = None,
        book_name: str | None = None,
        sequence: int = 0,
    ) -> None:
        self.board = board
        self.uuid = uuid
        self.name = name
        self.details: dict[str, Any] = dict(details or {})
        self.priority = priority
        self.created_on = created_on
        self.flow_uuid = flow_uuid
        self.book_uuid = book_uuid
        self.book_name = book_name
        self.sequence = sequence

    @property
    def state(self) -> str:
        """UNCLAIMED, CLAIMED, or COMPLETE (consumed or trashed): read live from the board."""
        return self.board.state_of(self)

    @property
    def owner(self) -> str | None:
        """The current owner (None when unclaimed or gone)."""
        return self.board.find_owner(self)

    @property
    def book(self) -> LogBook | None:
        """The logbook posted with the job, read from the board's persistence (None if none)."""
        if self.book_uuid is None:
            return None
        persistence = self.board.persistence
        if persistence is None:
            return None
        try:
            return persistence.get_logbook(self.book_uuid)
        except NotFound:
            return None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job is COMPLETE (consumed or trashed). Returns False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while self.state != states.COMPLETE:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(0.5, delay * 1.5)
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.uuid == self.uuid

    def __hash__(self) -> int:
        return hash(self.uuid)

    def __repr__(self) -> str:
        return f"<Job {self.name!r} {self.uuid} {self.priority.name}>"


class TrashedJob:
    """A job in a board's trash, with why it was trashed (``reason``), by whom and when."""

    def __init__(
        self,
        uuid: str,
        name: str,
        *,
        reason: str | None,
        trashed_by: str | None,
        trashed_on: dt.datetime | None,
        details: Any = None,
        priority: JobPriority | None = None,
        created_on: dt.datetime | None = None,
        flow_uuid: str | None = None,
        raw_details: str | None = None,
    ) -> None:
        self.uuid = uuid
        self.name = name
        self.reason = reason
        self.trashed_by = trashed_by
        self.trashed_on = trashed_on
        self.details = details
        self.priority = priority
        self.created_on = created_on
        self.flow_uuid = flow_uuid
        #: the stored details text when it could not be decoded (corrupt jobs)
        self.raw_details = raw_details

    def __repr__(self) -> str:
        return f"<TrashedJob {self.name!r} {self.uuid} reason={self.reason!r}>"


__all__ = ["Job", "JobPriority", "TrashedJob"]
