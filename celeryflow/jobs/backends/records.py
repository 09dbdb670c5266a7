"""Job records: the fields a post stores, and a :class:`Job` decoded from a stored record.

Shared by every board: a record that cannot be decoded raises :class:`CorruptJob`
with the reason (the board then moves it to the trash).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celeryflow import serialization
from celeryflow.exceptions import ConfigurationError
from celeryflow.jobs.job import Job, JobPriority

if TYPE_CHECKING:
    from celeryflow.jobs.backends.base import JobBoard


class CorruptJob(Exception):
    """A stored job record that cannot be decoded (internal: such jobs are trashed)."""


def job_fields(
    name: str, book: Any, details: Mapping[str, Any] | None, priority: JobPriority | str | None
) -> dict[str, Any]:
    """The fields of a new job (a fresh uuid, details and their JSON text, priority, flow and book).

    Raises:
        ConfigurationError: bad name, details, flow id or priority. SerializationError: details are not JSON.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"A job needs a non-empty name, not {name!r}")
    if details is not None and not isinstance(details, Mapping):
        raise ConfigurationError(f"Job details must be a dict, not {type(details).__name__}")
    rank = JobPriority.convert(priority)
    details = dict(details or {})
    text = serialization.dumps(details, f"details of job {name!r}")
    flow_uuid = details.get("flow_uuid")
    if flow_uuid is not None and not isinstance(flow_uuid, str):
        raise ConfigurationError(f"details['flow_uuid'] must be a flow id string, not {flow_uuid!r}")
    book_uuid: str | None = None
    book_name: str | None = None
    if isinstance(book, str):
        book_uuid = book
    elif book is not None:
        book_uuid = str(book.uuid)
        book_name = getattr(book, "name", None)
    return {
        "uuid": str(uuidlib.uuid4()),
        "name": name,
        "details": details,
        "details_text": text,
        "priority": rank,
        "flow_uuid": flow_uuid,
        "book_uuid": book_uuid,
        "book_name": book_name,
    }


def decode_record(board: JobBoard, record: Mapping[str, Any]) -> Job:
    """A job of ``board`` from a stored record; CorruptJob (with the reason) if it cannot be decoded."""
    uuid, name = record.get("uuid"), record.get("name")
    if not isinstance(uuid, str) or not uuid:
        raise CorruptJob("the job has no id")
    if not isinstance(name, str) or not name:
        raise CorruptJob("the job has no name")
    try:
        details = serialization.loads(record.get("details"))
    except Exception as exc:
        raise CorruptJob(f"its details are not valid JSON ({exc})") from None
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise CorruptJob(f"its details are a {type(details).__name__}, not a JSON object")
    try:
        priority = JobPriority.from_rank(record.get("priority"))  # type: ignore[arg-type]
    except ValueError as exc:
        raise CorruptJob(str(exc)) from None
    flow_uuid = record.get("flow_uuid") or details.get("flow_uuid")
    if flow_uuid is not None and not isinstance(flow_uuid, str):
        raise CorruptJob(f"its flow id {flow_uuid!r} is not a string")
    return Job(
        board, uuid, name, details=details, priority=priority, created_on=record.get("created_on"),
        flow_uuid=flow_uuid, book_uuid=record.get("book_uuid") or None,
        book_name=record.get("book_name") or None, sequence=int(record.get("seq") or 0),
    )


__all__ = ["CorruptJob", "decode_record", "job_fields"]
