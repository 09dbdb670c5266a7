"""Which logbook a message belongs to.

Messages carry the logbook's key: the random id stored in the database when its
schema was created (``Backend.logbook_id``, migration 0005). Never the URL, nor
anything derived from it: a URL may hold a password, and one database has many
spellings (``postgresql://`` and ``postgresql+psycopg://``, a host alias) that
must all be the same logbook. A worker resolves the key among the logbooks it
knows: its configured one and any opened in this process.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from celeryflow.exceptions import NotRegistered

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend

_lock = threading.Lock()
_known: dict[str, Backend] = {}


def key_of(backend: Backend) -> str:
    """The key of a logbook in messages: its stored id (the same for every URL that reaches it).

    Raises:
        StorageFailure: the database cannot be read.
    """
    return backend.logbook_id


def remember(backend: Backend) -> str:
    key = key_of(backend)
    with _lock:
        _known[key] = backend
    return key


def resolve(key: str, app: Any = None) -> Backend:
    with _lock:
        found = _known.get(key)
        if found is not None and found.closed:
            del _known[key]
            found = None
    if found is not None:
        return found
    url = app.conf.get("celeryflow_backend") if app is not None else None
    if url:
        from celeryflow.persistence.backends import fetch

        backend = fetch(url)
        if remember(backend) == key:
            return backend
    raise NotRegistered(
        f"This worker does not know the logbook of this message (key {key}). Point CELERYFLOW_BACKEND of the "
        "worker at the same database as the submitter"
    )
