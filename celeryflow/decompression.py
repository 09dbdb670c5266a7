"""Compressed messages expand with a bound: a small message cannot inflate to gigabytes in a worker.

kombu decompresses a message's body (header ``compression``: zlib, bz2, lzma) in
``kombu.Message.__init__``, before Celery or any task strategy sees it, with the plain
``zlib.decompress`` & co.: a 200 KB zlib body of zeros becomes 200 MB in the worker's
memory. :func:`bound` re-registers kombu's decoders with incremental ones that stop
after ``limit`` bytes and raise :class:`~celeryflow.exceptions.MessageTooLarge`; kombu
records the error on the message and Celery logs and acknowledges it ("Can't decode
message body"), so the worker goes on.

celeryflow's own worker processes (the stock app ``celeryflow_tasks``, the embedded
default) call it at start with ``CELERYFLOW_MAX_MESSAGE_BYTES`` (default 16 MiB; the
messages celeryflow sends carry ids, a few KB). The registry is process-wide, so
``celeryflow.install(app)`` does not touch it: a host app's worker opts in by calling
``celeryflow.decompression.bound()`` itself (e.g. in its ``worker_init`` signal).
"""

from __future__ import annotations

import bz2
import lzma
import os
import zlib
from collections.abc import Callable
from typing import Any

from celeryflow.exceptions import MessageTooLarge

#: the default bound on a decompressed message body (bytes)
DEFAULT_LIMIT = 16 * 1024 * 1024
LIMIT_ENV = "CELERYFLOW_MAX_MESSAGE_BYTES"


def limit_from_env() -> int:
    """``CELERYFLOW_MAX_MESSAGE_BYTES`` or :data:`DEFAULT_LIMIT`."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    try:
        return int(raw) if raw else DEFAULT_LIMIT
    except ValueError as exc:
        from celeryflow.exceptions import ConfigurationError

        raise ConfigurationError(f"{LIMIT_ENV}={raw!r} is not a number of bytes") from exc


def _too_large(kind: str, limit: int) -> MessageTooLarge:
    return MessageTooLarge(
        f"a {kind}-compressed message expands beyond {limit} bytes: refused before it is expanded "
        f"(raise {LIMIT_ENV} if such messages are legitimate)"
    )


def bounded_zlib(limit: int) -> Callable[[bytes], bytes]:
    def decompress(body: bytes) -> bytes:
        stream = zlib.decompressobj()
        out = stream.decompress(body, limit + 1)
        if len(out) > limit or stream.unconsumed_tail:
            raise _too_large("zlib", limit)
        return out + stream.flush()

    return decompress


def _bounded_streams(kind: str, make: Callable[[], Any], limit: int) -> Callable[[bytes], bytes]:
    """bz2 / lzma: concatenated streams, as ``bz2.decompress`` / ``lzma.decompress`` accept."""

    def decompress(body: bytes) -> bytes:
        parts: list[bytes] = []
        size = 0
        data = body
        while data:
            stream = make()
            chunk = stream.decompress(data, max_length=limit + 1 - size)
            size += len(chunk)
            parts.append(chunk)
            if size > limit or (not stream.eof and not stream.needs_input):
                raise _too_large(kind, limit)
            if not stream.eof:
                raise ValueError(f"a truncated {kind}-compressed message")
            data = stream.unused_data
        return b"".join(parts)

    return decompress


def bound(limit: int | None = None) -> int:
    """Make kombu expand compressed message bodies to at most ``limit`` bytes (in this process).

    Returns the limit in force. Codecs kombu has that are not bounded here (brotli, zstd,
    when installed) are unregistered: a message using them is refused, never expanded
    unbounded.
    """
    from kombu import compression

    limit = limit_from_env() if limit is None else int(limit)
    decoders: dict[str, Callable[[bytes], bytes]] = {
        "application/x-gzip": bounded_zlib(limit),
        "application/x-bz2": _bounded_streams("bz2", bz2.BZ2Decompressor, limit),
        "application/x-lzma": _bounded_streams("lzma", lambda: lzma.LZMADecompressor(), limit),
    }
    for content_type in list(compression._decoders):
        if content_type in decoders:
            compression._decoders[content_type] = decoders[content_type]
        else:
            compression._decoders[content_type] = _refuse(content_type)
    return limit


def _refuse(content_type: str) -> Callable[[bytes], bytes]:
    def decompress(body: bytes) -> bytes:
        raise MessageTooLarge(f"{content_type} messages are not accepted here: their expansion cannot be bounded")

    return decompress


__all__ = ["DEFAULT_LIMIT", "LIMIT_ENV", "bound", "bounded_zlib", "limit_from_env"]
