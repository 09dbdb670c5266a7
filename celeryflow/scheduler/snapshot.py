"""Typed, frozen views of the logbook rows the scheduler's rules decide on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FlowSnap:
    """A flow row as the transaction read it (under its lock).

    ``outstanding``: atoms queued or running; ``held``: ready atoms the dispatch window
    kept back; ``scope_retrying``: some retry scope of the flow is being reverted for
    another attempt.
    """

    uuid: str
    name: str
    state: str
    epoch: int
    outstanding: int = 0
    held: int = 0
    scope_retrying: bool = False

    @classmethod
    def of(cls, row: Any) -> FlowSnap:
        """The snapshot of an ORM or Core row with the flow table's column names."""
        return cls(
            uuid=row.uuid if hasattr(row, "uuid") else "",
            name=row.name,
            state=row.state,
            epoch=int(row.epoch),
            outstanding=int(getattr(row, "outstanding", 0) or 0),
            held=int(getattr(row, "held", 0) or 0),
            scope_retrying=bool(getattr(row, "scope_retrying", False)),
        )


@dataclass(frozen=True, slots=True)
class AtomSnap:
    """An atom row as the transaction read it.

    ``waiting``: predecessors not yet done (the logbook join); ``rwaiting``: executed
    successors not yet reverted; ``queued``: a message for it is on the broker;
    ``started_at``: set by a claim for execute, cleared by a full reset.
    """

    name: str
    state: str
    intention: str
    queued: bool = False
    waiting: int = 0
    rwaiting: int = 0
    started_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    queued_at: dt.datetime | None = None

    @classmethod
    def of(cls, row: Any) -> AtomSnap:
        """The snapshot of an ORM or Core row with the atom table's column names."""
        return cls(
            name=row.name,
            state=row.state,
            intention=row.intention,
            queued=bool(row.queued),
            waiting=int(getattr(row, "waiting", 0) or 0),
            rwaiting=int(getattr(row, "rwaiting", 0) or 0),
            started_at=getattr(row, "started_at", None),
            heartbeat_at=getattr(row, "heartbeat_at", None),
            queued_at=getattr(row, "queued_at", None),
        )
