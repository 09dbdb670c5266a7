"""``engine.storage``: read a flow's store, results, states and failures from the logbook."""

from __future__ import annotations

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


class Storage:
    """A view of one flow in the logbook (TaskFlow's ``engine.storage``)."""

    def __init__(self, backend: Backend, flow_uuid: str, comp: Compilation) -> None:
        self.backend = backend
        self.flow_uuid = flow_uuid
        self.comp = comp

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

    # ---------------------------------------------------------------- writes

    def inject(self, pairs: Mapping[str, Any], transient: bool = False) -> None:
        """Add values to the flow store (persisted: remote workers read them from the logbook)."""
        encoded = {k: serialization.roundtrip(v, f"store value {k!r}") for k, v in pairs.items()}

        def write(session: Any) -> None:
            row = self.backend.lock_flow(session, self.flow_uuid)
            if row is None:
                raise NotFound(f"Flow {self.flow_uuid} is not in the logbook")
            store = serialization.loads(row.store) or {}
            store.update(encoded)
            row.store = serialization.dumps(store)

        self.backend.run(write)
