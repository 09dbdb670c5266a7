"""Logbook models: TaskFlow's ``persistence.models``, as plain Python objects.

A :class:`LogBook` holds :class:`FlowDetail` objects, a flow detail holds
:class:`AtomDetail` objects (:class:`TaskDetail` or :class:`RetryDetail`).
They are snapshots: reading them never touches the database, and changing them
changes nothing until they are handed back to a backend
(``save_logbook``, ``update_flow_details``, ``update_atom_details``).

``from_row`` builds a model from the ORM rows of
:mod:`celeryflow.persistence.tables`; ``to_row_values`` gives the column values
a backend writes. JSON columns are decoded with :mod:`celeryflow.serialization`
and failures become :class:`~celeryflow.types.failure.Failure` objects.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid as uuidlib
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from celeryflow import serialization, states
from celeryflow.persistence.tables import AtomRow, FlowRow, LogBookRow
from celeryflow.types.failure import Failure

# AtomRow has no version column; the version rides in the atom's meta under this key.
_VERSION_KEY = "__version__"


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


def _decode_dict(text: str | None) -> dict[str, Any]:
    value = serialization.loads(text)
    return dict(value) if isinstance(value, dict) else {}


def _decode_failure(text: str | None) -> Failure | None:
    data = serialization.loads(text)
    return Failure.from_dict(data) if data else None


#: metadata keys the engine keeps for itself (its options); ``pformat`` leaves them out (they stay
#: in ``meta``). The scheduler's bookkeeping has columns of its own (tables.py), never in ``meta``.
ENGINE_META_KEYS = frozenset({"options"})


def _flow_order(spec: Any) -> dict[str, int]:
    """Atom name -> position in the flow's compiled order (how TaskFlow's details iterate)."""
    try:
        order = spec["compilation"]["order"]
    except (TypeError, KeyError):
        return {}
    return {name: index for index, name in enumerate(order)} if isinstance(order, list) else {}


def _format_meta(metadata: dict[str, Any], indent: int) -> list[str]:
    """TaskFlow's metadata lines (``progress`` as a percentage); the engine's own keys left out."""
    shown = {k: v for k, v in metadata.items() if k not in ENGINE_META_KEYS}
    if not shown:
        return []
    lines = [f"{' ' * indent}- metadata:"]
    for key, value in shown.items():
        if key == "progress" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = f"{value * 100.0:0.2f}%"
        lines.append(f"{' ' * (indent + 2)}+ {key} = {value}")
    return lines


def _format_shared(obj: Any, indent: int) -> list[str]:
    return [f"{' ' * indent}- {attr} = {getattr(obj, attr)}" for attr in ("uuid", "state") if hasattr(obj, attr)]


def _encode_failure(failure: Failure | None, what: str) -> str | None:
    return None if failure is None else serialization.dumps(failure.to_dict(), what)


class LogBook:
    """A named collection of flow details (TaskFlow's ``LogBook``).

    Behaves like a read-only mapping of flow uuid -> :class:`FlowDetail`
    (iteration yields the flow details themselves, as in TaskFlow).
    """

    def __init__(self, name: str, uuid: str | None = None) -> None:
        self.name = name
        self.uuid = uuid or _new_uuid()
        self.meta: dict[str, Any] = {}
        self.created_at: dt.datetime | None = None
        self.updated_at: dt.datetime | None = None
        self._flows: dict[str, FlowDetail] = {}

    def add(self, fd: FlowDetail) -> None:
        """Add (or replace) a flow detail; it is written by the next ``save_logbook``."""
        fd.logbook_uuid = self.uuid
        self._flows[fd.uuid] = fd

    def find(self, flow_uuid: str) -> FlowDetail | None:
        """The flow detail with that uuid, or ``None``."""
        return self._flows.get(flow_uuid)

    def __getitem__(self, flow_uuid: str) -> FlowDetail:
        return self._flows[flow_uuid]

    def __contains__(self, flow_uuid: object) -> bool:
        return flow_uuid in self._flows

    def __iter__(self) -> Iterator[FlowDetail]:
        return iter(list(self._flows.values()))

    def __len__(self) -> int:
        return len(self._flows)

    def __repr__(self) -> str:
        return f"LogBook(name={self.name!r}, uuid={self.uuid!r}, flows={len(self)})"

    def pformat(self, indent: int = 0, linesep: str = os.linesep) -> str:
        """This logbook, its flow details and their atom details as text (TaskFlow's layout)."""
        lines = [f"{' ' * indent}{type(self).__name__}: '{self.name}'"]
        lines.extend(_format_shared(self, indent + 1))
        lines.extend(_format_meta(self.meta, indent + 1))
        if self.created_at is not None:
            lines.append(f"{' ' * (indent + 1)}- created_at = {self.created_at.isoformat()}")
        if self.updated_at is not None:
            lines.append(f"{' ' * (indent + 1)}- updated_at = {self.updated_at.isoformat()}")
        lines.extend(fd.pformat(indent=indent + 1, linesep=linesep) for fd in self)
        return linesep.join(lines)

    @classmethod
    def from_row(cls, row: LogBookRow, flows: Iterable[FlowDetail] = ()) -> LogBook:
        """Build a logbook from its row and its (already built) flow details."""
        book = cls(row.name, row.uuid)
        book.meta = _decode_dict(row.meta)
        book.created_at = row.created_at
        book.updated_at = row.updated_at
        for fd in flows:
            book.add(fd)
        return book

    def to_row_values(self) -> dict[str, Any]:
        """Column values of the logbook row (timestamps are the backend's job)."""
        return {
            "uuid": self.uuid,
            "name": self.name,
            "meta": serialization.dumps(self.meta, f"meta of logbook {self.name!r}"),
        }


class FlowDetail:
    """One run of a flow: its state, metadata and atom details (TaskFlow's ``FlowDetail``).

    ``store``, ``spec`` and ``failures`` belong to the engine; they are ``None``
    until read from the logbook, and a ``None`` is never written over a stored value.
    ``epoch`` is the fencing token and is read-only here.
    """

    def __init__(self, name: str, uuid: str | None = None) -> None:
        self.name = name
        self.uuid = uuid or _new_uuid()
        self.state: str | None = None  # as TaskFlow: no state until stored (stored as PENDING)
        self.meta: dict[str, Any] = {}
        self.epoch = 0
        self.logbook_uuid: str | None = None
        self.store: dict[str, Any] | None = None
        self.spec: Any = None
        self.failures: dict[str, Failure] | None = None
        self.created_at: dt.datetime | None = None
        self.updated_at: dt.datetime | None = None
        self.finished_at: dt.datetime | None = None
        self._atoms: dict[str, AtomDetail] = {}

    def add(self, ad: AtomDetail) -> None:
        """Add (or replace) an atom detail."""
        self._atoms[ad.uuid] = ad

    def find(self, ad_uuid: str) -> AtomDetail | None:
        """The atom detail with that uuid, or ``None``."""
        return self._atoms.get(ad_uuid)

    def find_by_name(self, name: str) -> AtomDetail | None:
        """The atom detail with that atom name, or ``None``."""
        return next((ad for ad in self._atoms.values() if ad.name == name), None)

    def __iter__(self) -> Iterator[AtomDetail]:
        return iter(list(self._atoms.values()))

    def __len__(self) -> int:
        return len(self._atoms)

    def __repr__(self) -> str:
        return f"FlowDetail(name={self.name!r}, uuid={self.uuid!r}, state={self.state!r})"

    def pformat(self, indent: int = 0, linesep: str = os.linesep) -> str:
        """This flow detail and its atom details as text (TaskFlow's layout)."""
        lines = [f"{' ' * indent}{type(self).__name__}: '{self.name}'"]
        lines.extend(_format_shared(self, indent + 1))
        lines.extend(_format_meta(self.meta, indent + 1))
        lines.extend(ad.pformat(indent=indent + 1, linesep=linesep) for ad in self)
        return linesep.join(lines)

    @classmethod
    def from_row(cls, row: FlowRow, atoms: Iterable[AtomRow] = ()) -> FlowDetail:
        """Build a flow detail from its row and its atom rows."""
        fd = cls(row.name, row.uuid)
        fd.state = row.state
        fd.meta = _decode_dict(row.meta)
        fd.epoch = row.epoch or 0
        fd.logbook_uuid = row.logbook_uuid
        fd.store = _decode_dict(row.store)
        fd.spec = serialization.loads(row.spec)
        raw_failures = serialization.loads(row.failures) or {}
        fd.failures = {name: Failure.from_dict(data) for name, data in raw_failures.items()}
        fd.created_at = row.created_at
        fd.updated_at = row.updated_at
        fd.finished_at = row.finished_at
        order = _flow_order(fd.spec)
        for atom in sorted(atoms, key=lambda a: (order.get(a.name, len(order)), a.name)):
            fd.add(AtomDetail.from_row(atom))
        return fd

    def to_row_values(self) -> dict[str, Any]:
        """Column values of the flow row; engine-owned columns only when set."""
        what = f"flow {self.name!r}"
        values: dict[str, Any] = {
            "uuid": self.uuid,
            "name": self.name,
            "state": self.state or states.PENDING,
            "logbook_uuid": self.logbook_uuid,
            "meta": serialization.dumps(self.meta, f"meta of {what}"),
        }
        if self.store is not None:
            values["store"] = serialization.dumps(self.store, f"store of {what}")
        if self.spec is not None:
            values["spec"] = serialization.dumps(self.spec, f"spec of {what}")
        if self.failures is not None:
            values["failures"] = serialization.dumps(
                {name: f.to_dict() for name, f in self.failures.items()}, f"failures of {what}"
            )
        return values


class AtomDetail:
    """Base of :class:`TaskDetail` and :class:`RetryDetail` (TaskFlow's ``AtomDetail``)."""

    #: the ``kind`` column value of this model's rows.
    kind: ClassVar[str] = "task"

    def __init__(self, name: str, uuid: str | None = None) -> None:
        self.name = name
        self.uuid = uuid or _new_uuid()
        self.state: str = states.PENDING
        self.intention: str = states.EXECUTE
        self.results: Any = None
        self.failure: Failure | None = None
        self.revert_results: Any = None
        self.revert_failure: Failure | None = None
        self.meta: dict[str, Any] = {}
        self.version: Any = None
        self.flow_uuid: str | None = None
        self.progress = 0.0
        self.attempts = 0
        self.started_at: dt.datetime | None = None
        self.finished_at: dt.datetime | None = None

    def reset(self, state: str) -> None:
        """Forget results and failures and move to ``state`` (intention back to EXECUTE)."""
        self.state = state
        self.intention = states.EXECUTE
        self.results = None
        self.failure = None
        self.revert_results = None
        self.revert_failure = None

    def put(self, state: str, result: Any) -> None:
        """Record an outcome: a :class:`Failure` or a result, for execution or revert by ``state``."""
        self.state = state
        reverting = state in (states.REVERTING, states.REVERTED, states.REVERT_FAILURE)
        if isinstance(result, Failure):
            if reverting:
                self.revert_failure = result
            else:
                self.failure = result
        elif reverting:
            self.revert_results = result
        else:
            self.results = result
            self.failure = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, uuid={self.uuid!r}, state={self.state!r})"

    def pformat(self, indent: int = 0, linesep: str = os.linesep) -> str:
        """This atom detail as text (TaskFlow's layout)."""
        pad = " " * (indent + 1)
        version = self.version
        if isinstance(version, (list, tuple)):
            version = ".".join(str(part) for part in version)
        lines = [f"{' ' * indent}{type(self).__name__}: '{self.name}'"]
        lines.extend(_format_shared(self, indent + 1))
        lines.append(f"{pad}- version = {None if version is None else str(version)}")
        lines.append(f"{pad}- results = {self.results}")
        lines.append(f"{pad}- failure = {bool(self.failure)}")
        lines.extend(_format_meta(self.meta, indent + 1))
        return linesep.join(lines)

    @staticmethod
    def from_row(row: AtomRow) -> AtomDetail:
        """Build a :class:`TaskDetail` or :class:`RetryDetail` (by ``row.kind``) from its row."""
        cls: type[AtomDetail] = RetryDetail if row.kind == RetryDetail.kind else TaskDetail
        ad = cls(row.name, row.uuid)
        ad.flow_uuid = row.flow_uuid
        ad.state = row.state
        ad.intention = row.intention
        ad.failure = _decode_failure(row.failure)
        ad.revert_results = serialization.loads(row.revert_result)
        ad.revert_failure = _decode_failure(row.revert_failure)
        ad.meta = _decode_dict(row.meta)
        ad.version = ad.meta.pop(_VERSION_KEY, None)
        ad.progress = row.progress or 0.0
        if cls is TaskDetail and row.started_at is not None:
            # TaskFlow keeps a task's progress in its metadata once it ran (pformat shows it)
            ad.meta["progress"] = ad.progress
        ad.attempts = row.attempts or 0
        ad.started_at = row.started_at
        ad.finished_at = row.finished_at
        ad._load_results(row)
        return ad

    def _load_results(self, row: AtomRow) -> None:
        self.results = serialization.loads(row.result)

    def _results_values(self, what: str) -> dict[str, Any]:
        return {"result": serialization.dumps(self.results, f"result of {what}")}

    def to_row_values(self) -> dict[str, Any]:
        """Column values of the atom row (``flow_uuid`` is set by the caller)."""
        what = f"atom {self.name!r}"
        meta = dict(self.meta)
        if self.version is not None:
            meta[_VERSION_KEY] = self.version
        return {
            "uuid": self.uuid,
            "name": self.name,
            "kind": self.kind,
            "state": self.state or states.PENDING,
            "intention": self.intention or states.EXECUTE,
            "failure": _encode_failure(self.failure, f"failure of {what}"),
            "revert_result": serialization.dumps(self.revert_results, f"revert result of {what}"),
            "revert_failure": _encode_failure(self.revert_failure, f"revert failure of {what}"),
            "meta": serialization.dumps(meta, f"meta of {what}"),
            **self._results_values(what),
        }


class TaskDetail(AtomDetail):
    """The detail of a task: ``results`` is what its ``execute`` returned."""

    kind: ClassVar[str] = "task"


class RetryDetail(AtomDetail):
    """The detail of a retry controller.

    ``results`` is the history: a list of ``(value, {atom name: Failure})``, one
    per attempt, oldest first.
    """

    kind: ClassVar[str] = "retry"

    def __init__(self, name: str, uuid: str | None = None) -> None:
        super().__init__(name, uuid)
        self.results: list[tuple[Any, dict[str, Failure]]] = []

    @property
    def last_results(self) -> Any:
        """The value provided by the latest attempt (``None`` before the first)."""
        return self.results[-1][0] if self.results else None

    @property
    def last_failures(self) -> dict[str, Failure]:
        """The failures recorded against the latest attempt."""
        return self.results[-1][1] if self.results else {}

    def reset(self, state: str) -> None:
        super().reset(state)
        self.results = []

    def put(self, state: str, result: Any) -> None:
        """A successful execution starts a new attempt with ``result`` as its value."""
        if state == states.SUCCESS and not isinstance(result, Failure):
            self.state = state
            self.failure = None
            self.results.append((result, {}))
        else:
            super().put(state, result)

    def _load_results(self, row: AtomRow) -> None:
        history = serialization.loads(row.history) or []
        self.results = [
            (value, {name: Failure.from_dict(data) for name, data in (failures or {}).items()})
            for value, failures in history
        ]

    def _results_values(self, what: str) -> dict[str, Any]:
        history = [[value, {n: f.to_dict() for n, f in failures.items()}] for value, failures in self.results]
        # ``result`` mirrors the latest value so readers of provided values need not parse history.
        return {
            "history": serialization.dumps(history, f"retry history of {what}"),
            "result": serialization.dumps(self.last_results, f"result of {what}"),
        }


__all__ = ["AtomDetail", "FlowDetail", "LogBook", "RetryDetail", "TaskDetail"]
