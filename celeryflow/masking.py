"""Which names look secret, and masking them in values shown to people.

``celeryflow flows show``, the status views of the Django and Flask integrations and
anything else that prints a flow's store or results replace the value of a
secret-looking name by ``***``, at any depth of nested dicts and lists. The list of
words is the setting ``mask_keys`` (``CELERYFLOW_MASK_KEYS``, comma-separated; it
replaces :data:`DEFAULT_MASK_KEYS`).

How a word matches a name (case-insensitive; the name is split into words at
``_``, ``-``, ``.``, spaces, camelCase and letter/digit boundaries, so
``cardPAN_2`` is ``card``, ``pan``, ``2``):

* a word of four letters or more matches anywhere in the name (``session`` masks
  ``sessionid``, ``card`` masks ``creditcard``), as all words did before;
* a shorter word must be a whole word of the name: ``pan`` masks ``card_pan`` and
  ``panNumber`` but not ``company`` or ``expand`` (three letters occur inside too many
  ordinary words);
* ``*`` is a wildcard within one word: ``*key`` masks ``api_key``, ``apikey`` and
  ``key`` (and, harmlessly, ``monkey``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import Any

#: The default ``mask_keys``: credentials, HTTP authentication, payment and identity data.
DEFAULT_MASK_KEYS: tuple[str, ...] = (
    "password", "passwd", "secret", "token", "*key", "credential",
    "authorization", "cookie", "session",
    "card", "cvv", "cvc", "pan", "iban", "ssn",
)

_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")   # "IBANCode" -> "IBAN_Code"
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")        # "cardNumber" -> "card_Number"
_WORD = re.compile(r"[a-z]+|[0-9]+")

#: Words shorter than this must match a whole word of the name.
SUBSTRING_MIN = 4


def words_of(name: str) -> list[str]:
    """The lower-case words of ``name`` (see the module docstring)."""
    spaced = _CAMEL.sub(r"\1_\2", _ACRONYM.sub(r"\1_\2", name))
    return _WORD.findall(spaced.lower())


def is_secret_name(name: str, mask_keys: Iterable[str]) -> bool:
    """True if ``name`` matches one of ``mask_keys`` (rules in the module docstring)."""
    words = words_of(name)
    joined = "".join(words)
    for raw in mask_keys:
        key = raw.strip().lower()
        if not key:
            continue
        if "*" in key or "?" in key:
            if any(fnmatch.fnmatchcase(word, key) for word in words) or fnmatch.fnmatchcase(joined, key):
                return True
        elif len(key) >= SUBSTRING_MIN:
            if key in joined:
                return True
        elif key in words:
            return True
    return False


def mask_value(value: Any, is_masked: Callable[[str], bool], mask: str = "***") -> Any:
    """``value`` with the value of every secret-looking dict key, at any depth, replaced by ``mask``."""
    if isinstance(value, dict):
        return {k: (mask if isinstance(k, str) and is_masked(k) else mask_value(v, is_masked, mask))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(item, is_masked, mask) for item in value]
    return value


__all__ = ["DEFAULT_MASK_KEYS", "is_secret_name", "mask_value", "words_of"]
