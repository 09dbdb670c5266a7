"""JSON encoding for everything celeryflow stores or sends. Never pickle.

Values may be JSON types plus ``datetime``/``date``/``time``, ``UUID``,
``Decimal`` and ``bytes``; these are tagged with kombu's ``__type__`` markers
(kombu's own JSON codec is used, so the broker and the logbook agree).
Anything else raises :class:`~celeryflow.exceptions.SerializationError` naming
where the value came from and its type; so do NaN and the infinities, which
Python's ``json`` would write as the non-JSON tokens ``NaN``/``Infinity``
(PostgreSQL's ``::json`` and most parsers outside Python reject them).
Reading stays lenient: rows written before that rule still load.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any

from kombu.utils import json as kjson

from celeryflow.exceptions import SerializationError

# kombu encodes bytes as UTF-8 text, which loses arbitrary binary data; register
# a base64 codec under our own tag so any bytes value round-trips.
kjson.register_type(
    bytes,
    "cf_bytes",
    lambda value: base64.b64encode(value).decode("ascii"),
    lambda value: base64.b64decode(value),
)


def _find_unserializable(value: Any, path: str) -> tuple[str, str] | None:
    """Locate the first value that kombu's codec cannot encode: (path, type name)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, f"float ({value!r})"
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return f"{path}[{key!r}] (key)", type(key).__qualname__
            if isinstance(key, float) and not math.isfinite(key):
                return f"{path}[{key!r}] (key)", f"float ({key!r})"
            found = _find_unserializable(item, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_unserializable(item, f"{path}[{index}]")
            if found:
                return found
        return None
    try:
        kjson.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return path, type(value).__qualname__
    return None


def _find_namedtuple(value: Any) -> tuple[str, str] | None:
    """Locate the first namedtuple (a tuple subclass with ``_fields``): (path, type name).

    JSON would silently turn it into a list, and attribute access would fail later on
    whoever reads it back; refusing it at once names where it is.
    """
    trail: list[Any] = []
    found = _scan(value, trail)
    if found is None:
        return None
    return "".join(f"[{key!r}]" for key in reversed(trail)), found


def _scan(value: Any, trail: list[Any]) -> str | None:
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, tuple):
        if hasattr(type(value), "_fields"):
            return type(value).__qualname__
        items = enumerate(value)
    elif isinstance(value, list):
        items = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return None
    for key, item in items:
        if isinstance(item, _CONTAINERS):
            found = _scan(item, trail)
            if found is not None:
                trail.append(key)
                return found
    return None


_CONTAINERS = (dict, list, tuple)


def dumps(value: Any, what: str = "value") -> str:
    """Encode ``value`` as JSON text.

    Args:
        value: the value to encode.
        what: a description used in the error (e.g. ``"result of atom 'boot'"``).

    Raises:
        SerializationError: the value (or a part of it) is not JSON-serializable.
    """
    try:
        # allow_nan=False: NaN and the infinities are not JSON (see the module docstring).
        return kjson.dumps(value, allow_nan=False)
    except (TypeError, ValueError, OverflowError) as exc:
        found = _find_unserializable(value, "")
        where, type_name = found if found else ("", type(value).__qualname__)
        raise SerializationError(
            f"{what}{where} is a {type_name}, which is not JSON-serializable. celeryflow stores only "
            "JSON values (plus datetime, UUID, Decimal, bytes; finite floats only: NaN and Infinity are "
            "not JSON, store None or a string instead); return or store plain data instead",
            exc,
        ) from exc


def check_value(value: Any, what: str = "value") -> None:
    """Refuse what JSON would silently change: a namedtuple (it would come back a plain list).

    Called on the values users hand over (store values, atom results), not on
    celeryflow's own records.

    Raises:
        SerializationError: ``value`` is or contains a namedtuple; the message names where.
    """
    if isinstance(value, _CONTAINERS):
        named = _find_namedtuple(value)
        if named is not None:
            where, type_name = named
            raise SerializationError(
                f"{what}{where} is a namedtuple ({type_name}), which JSON would turn into a plain list "
                "(its attribute names lost). Store or return it as a dict (value._asdict()) or a list"
            )


def dumps_value(value: Any, what: str = "value") -> str:
    """:func:`dumps` of a user's value (a store value, an atom result), after :func:`check_value`."""
    check_value(value, what)
    return dumps(value, what)


def loads(text: str | bytes | None) -> Any:
    """Decode JSON text written by :func:`dumps` (``None`` stays ``None``)."""
    if text is None:
        return None
    return kjson.loads(text)


def roundtrip(value: Any, what: str = "value") -> Any:
    """Check that ``value`` is serializable and return what a reader would get back."""
    return loads(dumps(value, what))


def roundtrip_value(value: Any, what: str = "value") -> Any:
    """:func:`roundtrip` of a user's value, after :func:`check_value`."""
    check_value(value, what)
    return loads(dumps(value, what))
