"""``dir://`` and ``file://``: TaskFlow's file-system logbook URLs, as an SQLite file in that directory.

TaskFlow's directory backend keeps one JSON file per logbook, flow and atom under a
root directory, what many scripts use in development::

    backend = fetch({"connection": "file:///tmp/flows"})        # or "dir:///tmp/flows"
    backend = fetch({"connection": "dir://", "path": "/tmp/flows"})

Here that directory holds one SQLite logbook, ``celeryflow-logbook.db`` (created with
the directory on first use). What a TaskFlow program relies on holds: the state lives
under the directory and survives the process, several processes may share it, removing
the directory removes the logbook, and a second run finds what the first saved. What
differs, on purpose: writes are transactional (TaskFlow's files are not), and the
directory's content is a database, not JSON files to read by hand (``celeryflow flows
list --backend dir:///tmp/flows`` shows it). TaskFlow's ``max_cache_size`` is accepted
and ignored: nothing is cached in memory.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

from celeryflow.exceptions import ConfigurationError

DIR_SCHEMES = ("dir", "file")
#: the SQLite file a ``dir://`` logbook lives in, inside the directory
DB_FILENAME = "celeryflow-logbook.db"


def is_dir_url(url: str) -> bool:
    """Whether ``url`` is a ``dir://`` or ``file://`` logbook URL."""
    scheme, sep, _rest = url.partition("://")
    return bool(sep) and scheme.lower() in DIR_SCHEMES


def sqlite_url(url: str, options: MutableMapping[str, Any]) -> str:
    """The ``sqlite:///…`` URL of the logbook for a ``dir://`` or ``file://`` URL.

    ``options`` may carry TaskFlow's ``path`` (the directory, used when the URL has
    none) and ``max_cache_size``; both are removed from it.

    Raises:
        ConfigurationError: no directory is given, or the path is an existing file.
    """
    options.pop("max_cache_size", None)
    conf_path = options.pop("path", None)
    path = unquote(urlsplit(url).path) or (str(conf_path) if conf_path else "")
    if not path:
        raise ConfigurationError(
            f"The logbook URL {url!r} names no directory: use dir:///path/to/dir (or file:///path/to/dir), "
            "or pass {'connection': 'dir://', 'path': '/path/to/dir'}"
        )
    # file:////tmp/x (TaskFlow's "file:///%s" % "/tmp/x") has the path //tmp/x: one root is enough
    path = os.path.abspath(os.path.expanduser(path))
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if os.path.isfile(path):
        raise ConfigurationError(
            f"The logbook directory {path!r} is a file: a dir:// logbook is a directory "
            f"(celeryflow keeps {DB_FILENAME} in it); use sqlite:///{path} for an SQLite file"
        )
    os.makedirs(path, exist_ok=True)
    return f"sqlite:///{os.path.join(path, DB_FILENAME)}"


__all__ = ["DB_FILENAME", "DIR_SCHEMES", "is_dir_url", "sqlite_url"]
