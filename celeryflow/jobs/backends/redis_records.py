"""The Redis jobboard's stored values as Python: job hashes as decodable records, trash entries as jobs.

Nothing here talks to Redis: each function takes what a command returned (bytes, or
text when the client decodes responses) and never raises on bad data; a record
that cannot be decoded is left for ``JobBoard._decode`` to report (it is trashed).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from celeryflow import serialization
from celeryflow.jobs.job import JobPriority, TrashedJob


def text(value: Any) -> str | None:
    """``value`` as text (bytes decoded as UTF-8, bad bytes replaced); ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO timestamp as a datetime; ``None`` when missing or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def as_record(uuid: str, raw: Mapping[bytes, bytes]) -> dict[str, Any]:
    """The job hash ``raw`` of job ``uuid`` as a record for ``JobBoard._decode``."""
    record: dict[str, Any] = {text(k) or "": v for k, v in raw.items()}
    out: dict[str, Any] = {"uuid": uuid, "_raw": True}
    for key in ("name", "flow_uuid", "book_uuid", "book_name"):
        out[key] = text(record.get(key))
    details = record.get("details")
    if isinstance(details, bytes):
        try:
            out["details"] = details.decode("utf-8")
        except UnicodeDecodeError:
            out["details"] = "\x00<undecodable bytes>"  # fails JSON decoding: trashed with a reason
    else:
        out["details"] = details
    try:
        out["priority"] = int(text(record.get("priority")) or "")
    except ValueError:
        out["priority"] = text(record.get("priority"))
    try:
        out["seq"] = int(text(record.get("seq")) or 0)
    except ValueError:
        out["seq"] = 0
    created = text(record.get("created_on"))
    try:
        out["created_on"] = dt.datetime.fromisoformat(created) if created else None
    except ValueError:
        out["created_on"] = None
    if not record:
        out["name"] = None  # the hash is missing: decoding reports it
        out["_missing"] = True
    return out


def trashed_job(raw: Any) -> TrashedJob:
    """One entry of the trash list (a JSON record written by the trash script) as a :class:`TrashedJob`."""
    try:
        # Lua's cjson copies non-UTF-8 bytes of a corrupt job through as they are
        record = json.loads(raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw)
    except ValueError:
        record = {"reason": "unreadable trash record", "details": text(raw)}
    details_text = record.get("details")
    rawtext: str | None = None
    try:
        details = serialization.loads(details_text) if details_text else None
    except Exception:
        details, rawtext = None, details_text
    try:
        priority: JobPriority | None = JobPriority.from_rank(record.get("priority"))
    except ValueError:
        priority = None
    return TrashedJob(
        str(record.get("uuid") or ""), str(record.get("name") or "?"), reason=record.get("reason"),
        trashed_by=record.get("trashed_by"), trashed_on=parse_time(record.get("trashed_on")),
        details=details, priority=priority, created_on=parse_time(record.get("created_on")),
        flow_uuid=record.get("flow_uuid") or None, raw_details=rawtext,
    )


__all__ = ["as_record", "parse_time", "text", "trashed_job"]
