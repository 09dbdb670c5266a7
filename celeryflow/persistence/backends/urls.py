"""Database URLs that keep their password out of logs, reprs and messages."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (unparseable URLs are returned as is)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


class BackendURL(str):
    """A database URL: the full text as a ``str``, masked in ``repr`` and in :attr:`masked`."""

    @property
    def masked(self) -> str:
        """The URL with its password replaced by ``***``: safe for logs and messages."""
        return mask_url(str(self))

    def __repr__(self) -> str:
        return repr(self.masked)


__all__ = ["BackendURL", "mask_url"]
