"""TaskFlow's backend connection object, as a thin view of a celeryflow backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend
    from celeryflow.persistence.models import AtomDetail, FlowDetail, LogBook


class Connection:
    """TaskFlow's backend connection: the logbook API of one :class:`Backend`.

    celeryflow has no per-connection state (the backend's pool serves every
    call), so :meth:`close` does nothing and the backend stays open.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: the backend's pool is shared."""

    def upgrade(self) -> None:
        self.backend.upgrade()

    def validate(self) -> None:
        self.backend.validate()

    def save_logbook(self, book: LogBook) -> LogBook:
        return self.backend.save_logbook(book)

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> LogBook:
        return self.backend.get_logbook(book_uuid, lazy=lazy)

    def get_logbooks(self, lazy: bool = False) -> Iterator[LogBook]:
        return iter(self.backend.get_logbooks(lazy=lazy))

    def destroy_logbook(self, book_uuid: str) -> None:
        self.backend.destroy_logbook(book_uuid)

    def get_flow_details(self, flow_uuid: str, lazy: bool = False) -> FlowDetail:
        return self.backend.get_flow_details(flow_uuid, lazy=lazy)

    def get_atom_details(self, atom_uuid: str) -> AtomDetail:
        return self.backend.get_atom_details(atom_uuid)

    def update_flow_details(self, fd: FlowDetail) -> FlowDetail:
        return self.backend.update_flow_details(fd)

    def update_atom_details(self, ad: AtomDetail) -> AtomDetail:
        return self.backend.update_atom_details(ad)

    def clear_all(self) -> None:
        self.backend.clear_all()


__all__ = ["Connection"]
