"""Which logbook a message belongs to.

Messages carry a short backend key (a hash of the logbook URL), never the URL
itself (it may hold a password). A worker resolves the key among the logbooks
it knows: its configured one and any opened in this process.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any

from celeryflow.exceptions import NotRegistered

if TYPE_CHECKING:
    from celeryflow.persistence.backends.base import Backend

_lock = threading.Lock()
_known: dict[str, Backend] = {}


def key_of(backend: Backend) -> str:
    """A short, stable key for a logbook: the same URL gives the same key in every process."""
    return hashlib.sha1(str(backend.url).encode()).hexdigest()[:12]


def remember(backend: Backend) -> str:
    key = key_of(backend)
    with _lock:
        _known[key] = backend
    return key


def resolve(key: str, app: Any = None) -> Backend:
    with _lock:
        found = _known.get(key)
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
