"""celeryflow.decompression: kombu's decoders, bounded (a small message cannot expand to gigabytes)."""

from __future__ import annotations

import bz2
import lzma
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from kombu import compression

from celeryflow import decompression
from celeryflow.exceptions import MessageTooLarge

CODECS = {"application/x-gzip": zlib.compress, "application/x-bz2": bz2.compress,
          "application/x-lzma": lzma.compress}


@pytest.fixture
def bounded() -> Iterator[int]:
    saved = dict(compression._decoders)
    try:
        yield decompression.bound(1024 * 1024)
    finally:
        compression._decoders.clear()
        compression._decoders.update(saved)


@pytest.mark.parametrize("content_type", sorted(CODECS))
def test_within_the_bound_bodies_round_trip(bounded: int, content_type: str) -> None:
    body = b'[["f", "a", 1, "t"], {}, {}]' * 100
    assert compression.decompress(CODECS[content_type](body), content_type) == body
    two = CODECS[content_type](body) + CODECS[content_type](body)  # concatenated streams, as the stdlib takes
    if content_type != "application/x-gzip":
        assert compression.decompress(two, content_type) == body + body


@pytest.mark.parametrize("content_type", sorted(CODECS))
def test_a_bomb_is_refused_without_being_expanded(bounded: int, content_type: str) -> None:
    bomb = CODECS[content_type](b"\0" * (64 * 1024 * 1024))
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooLarge, match="CELERYFLOW_MAX_MESSAGE_BYTES"):
            compression.decompress(bomb, content_type)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # lzma's own dictionary is a few MB (allocated through Python's allocator): far below 64 MB
    assert peak < 16 * 1024 * 1024, f"{peak} bytes allocated: it was expanded"


def test_the_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(decompression.LIMIT_ENV, "2048")
    assert decompression.limit_from_env() == 2048
    monkeypatch.setenv(decompression.LIMIT_ENV, "lots")
    from celeryflow.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="CELERYFLOW_MAX_MESSAGE_BYTES"):
        decompression.limit_from_env()
