"""``engine.storage``: read a flow's store, results, states and failures from the logbook."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from celeryflow import serialization, states
from celeryflow.exceptions import NotFound
from celeryflow.persistence.tables import AtomRow, FlowRow
from celeryflow.runtime.args import extract
from celeryflow.types.failure import Failure

if TYPE_CHECKING:
    from celeryflow.compiler import Compilation
    from celeryflow.persistence.backends.base import Backend


class _Lock:
    """TaskFlow's storage ``lock`` shape (``read_lock()``, ``write_lock()``) over one re-entrant lock.

    celeryflow's storage keeps no state in memory (every read goes to the logbook), so
    the lock only serialises callers of this process that want it.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def read_lock(self) -> threading.RLock:
        return self._lock

    def write_lock(self) -> threading.RLock:
        return self._lock


class Storage:
    """A view of one flow in the logbook (TaskFlow's ``engine.storage``).

    Attributes:
        backend: the logbook backend.
        flow_uuid: the flow detail's uuid.
    """

    def __init__(self, backend: Backend, flow_uuid: str, comp: Compilation) -> None:
        self.backend = backend
        self.flow_uuid = flow_uuid
        self.comp = comp
        self._flow_name: str | None = None
        self._lock = _Lock()

    # ---------------------------------------------------------------- TaskFlow's properties

    @property
    def flow_name(self) -> str:
        """The flow detail's name (TaskFlow's ``storage.flow_name``)."""
        if self._flow_name is None:
            self._flow_name = self._flow().name
        return self._flow_name

    @property
    def flow_meta(self) -> dict[str, Any]:
        """The flow detail's metadata (a copy read now; change it with :meth:`update_flow_metadata`)."""
        return _decode_meta(self._flow().meta)

    @property
    def lock(self) -> _Lock:
        """A reader/writer lock shape for callers of this process (TaskFlow's ``storage.lock``)."""
        return self._lock

    # ---------------------------------------------------------------- reads

    def _flow(self) -> FlowRow:
        def read(session: Any) -> FlowRow | None:
            row = session.get(FlowRow, self.flow_uuid)
            if row is not None:
                session.expunge(row)
            return row

        row = self.backend.run(read)
        if row is None:
            raise NotFound(f"Flow {self.flow_uuid} is not in the logbook")
        return row

    def _atoms(self, names: Iterable[str] | None = None) -> dict[str, AtomRow]:
        def read(session: Any) -> dict[str, AtomRow]:
            stmt = select(AtomRow).where(AtomRow.flow_uuid == self.flow_uuid)
            if names is not None:
                stmt = stmt.where(AtomRow.name.in_(list(names)))
            rows = {row.name: row for row in session.scalars(stmt)}
            for row in rows.values():
                session.expunge(row)
            return rows

        return self.backend.run(read)

    def _atom(self, name: str) -> AtomRow:
        rows = self._atoms([name])
        if name not in rows:
            raise NotFound(f"Flow {self.flow_uuid} has no atom named {name!r}")
        return rows[name]

    def store(self) -> dict[str, Any]:
        """The flow store (inputs)."""
        return dict(serialization.loads(self._flow().store) or {})

    def get(self, atom_name: str) -> Any:
        """The raw result of one atom (TaskFlow's ``storage.get``)."""
        row = self._atom(atom_name)
        if row.failure is not None:
            return Failure.from_dict(serialization.loads(row.failure))
        return serialization.loads(row.result)

    def fetch_all(self) -> dict[str, Any]:
        """Every named value: the store, overridden by the outputs of atoms that succeeded."""
        values = self.store()
        rows = self._atoms()
        for name in self.comp.order:
            row = rows.get(name)
            if row is None or row.state != states.SUCCESS:
                continue
            result = serialization.loads(row.result)
            for symbol, index in self.comp.atoms[name].save_as.items():
                try:
                    values[symbol] = extract(result, index, name, symbol)
                except NotFound:
                    continue
        return values

    def fetch(self, name: str, many_handler: Any = None) -> Any:
        """The value of one name (an atom output or a store key)."""
        values = self.fetch_all()
        if name not in values:
            raise NotFound(f"Name {name!r} was not found: no atom provided it and the store has no such key")
        return values[name]

    def get_atom_state(self, name: str) -> str:
        return self._atom(name).state

    def get_atom_intention(self, name: str) -> str:
        return self._atom(name).intention

    def get_atoms_states(self, names: Iterable[str] | None = None) -> dict[str, tuple[str, str]]:
        return {n: (r.state, r.intention) for n, r in self._atoms(names).items()}

    def get_task_progress(self, name: str) -> float:
        return float(self._atom(name).progress)

    def get_flow_state(self) -> str:
        return self._flow().state

    def get_execute_failures(self) -> dict[str, Failure]:
        return {
            n: Failure.from_dict(serialization.loads(r.failure)) for n, r in self._atoms().items() if r.failure
        }

    def get_revert_failures(self) -> dict[str, Failure]:
        return {
            n: Failure.from_dict(serialization.loads(r.revert_failure))
            for n, r in self._atoms().items()
            if r.revert_failure
        }

    def get_flow_failures(self) -> dict[str, Failure]:
        """The failures that started the flow's compensation."""
        data = serialization.loads(self._flow().failures) or {}
        return {name: Failure.from_dict(value) for name, value in data.items()}

    def get_retry_history(self, name: str) -> Any:
        from celeryflow.retry import History

        row = self._atom(name)
        return History.from_list(serialization.loads(row.history) or [])

    def get_retry_histories(self) -> list[tuple[str, Any]]:
        """``[(retry name, History)]`` for every retry controller of the flow."""
        retries = [name for name in self.comp.order if self.comp.atoms[name].kind == "retry"]
        return [(name, self.get_retry_history(name)) for name in retries]

    def get_atom_uuid(self, name: str) -> str:
        """The uuid of the atom detail of ``name``."""
        return self._atom(name).uuid

    def get_atom_uuids(self) -> dict[str, str]:
        """``{atom name: atom detail uuid}`` for every atom of the flow."""
        return {name: row.uuid for name, row in self._atoms().items()}

    def get_atom_metadata(self, name: str) -> dict[str, Any]:
        """An atom detail's metadata (what :meth:`update_atom_metadata` and listeners wrote)."""
        return _decode_meta(self._atom(name).meta)

    def get_execute_result(self, name: str) -> Any:
        """An atom's execute result, or its Failure (TaskFlow's name for :meth:`get`)."""
        return self.get(name)

    def get_revert_result(self, name: str) -> Any:
        """An atom's revert result, or the Failure its revert raised."""
        row = self._atom(name)
        if row.revert_failure is not None:
            return Failure.from_dict(serialization.loads(row.revert_failure))
        return serialization.loads(row.revert_result)

    get_failures = get_execute_failures

    def has_failures(self) -> bool:
        """Whether any atom's execute or revert failed."""
        return any(r.failure or r.revert_failure for r in self._atoms().values())

    def get_task_progress_details(self, name: str) -> dict[str, Any] | None:
        """The details of the atom's latest progress report (``None``: there were none)."""
        progress = self.get_task_progress(name)
        return {"at_progress": progress, "details": None} if progress else None

    # ---------------------------------------------------------------- writes

    def inject(self, pairs: Mapping[str, Any], transient: bool = False) -> None:
        """Add values to the flow store (persisted: remote workers read them from the logbook)."""
        encoded = {k: serialization.roundtrip_value(v, f"store value {k!r}") for k, v in pairs.items()}

        def write(session: Any) -> None:
            row = self.backend.lock_flow(session, self.flow_uuid)
            if row is None:
                raise NotFound(f"Flow {self.flow_uuid} is not in the logbook")
            store = serialization.loads(row.store) or {}
            store.update(encoded)
            row.store = serialization.dumps(store)

        self.backend.run(write)

    def update_flow_metadata(self, update_with: Mapping[str, Any]) -> None:
        """Merge ``update_with`` into the flow detail's metadata (JSON values)."""
        if not update_with:
            return
        encoded = serialization.roundtrip(dict(update_with), "flow metadata")

        def write(session: Any) -> None:
            row = self.backend.lock_flow(session, self.flow_uuid)
            if row is None:
                raise NotFound(f"Flow {self.flow_uuid} is not in the logbook")
            row.meta = serialization.dumps({**_decode_meta(row.meta), **encoded})

        self.backend.run(write)

    def update_atom_metadata(self, name: str, update_with: Mapping[str, Any]) -> None:
        """Merge ``update_with`` into the metadata of the atom detail of ``name`` (JSON values)."""
        if not update_with:
            return
        encoded = serialization.roundtrip(dict(update_with), f"metadata of atom {name!r}")

        def write(session: Any) -> None:
            if self.backend.lock_flow(session, self.flow_uuid) is None:
                raise NotFound(f"Flow {self.flow_uuid} is not in the logbook")
            row = session.scalar(select(AtomRow).where(AtomRow.flow_uuid == self.flow_uuid, AtomRow.name == name))
            if row is None:
                raise NotFound(f"Flow {self.flow_uuid} has no atom named {name!r}")
            row.meta = serialization.dumps({**_decode_meta(row.meta), **encoded})

        self.backend.run(write)


def _decode_meta(text: str | None) -> dict[str, Any]:
    value = serialization.loads(text)
    return dict(value) if isinstance(value, dict) else {}
