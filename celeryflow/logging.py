"""TaskFlow's ``taskflow.logging``: level names, ``BLATHER`` and ``getLogger``.

``getLogger(name)`` returns a :class:`logging.LoggerAdapter` with ``trace()`` (at
:data:`BLATHER`, below ``DEBUG``) and ``warn()``, as TaskFlow's does; a logger that
has no handler gets a :class:`logging.NullHandler`, so a library logging through it
prints nothing until the application configures logging.
"""

from __future__ import annotations

import logging as _logging
from typing import Any

_BASE = __name__.split(".", 1)[0]

#: below DEBUG: very chatty output (TaskFlow's ``BLATHER``, alias ``TRACE``)
BLATHER = 5
TRACE = BLATHER

CRITICAL = _logging.CRITICAL
DEBUG = _logging.DEBUG
ERROR = _logging.ERROR
FATAL = _logging.FATAL
INFO = _logging.INFO
NOTSET = _logging.NOTSET
WARN = _logging.WARNING
WARNING = _logging.WARNING


class _TraceLoggerAdapter(_logging.LoggerAdapter):  # type: ignore[type-arg,unused-ignore]
    """A logger adapter with ``trace`` (at :data:`BLATHER`) and ``warn``."""

    def trace(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log at :data:`BLATHER`."""
        self.log(TRACE, msg, *args, **kwargs)

    def warn(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log at ``WARNING`` (TaskFlow keeps this old spelling)."""
        self.warning(msg, *args, **kwargs)


def getLogger(name: str = _BASE, extra: Any = None) -> _TraceLoggerAdapter:
    """The logger ``name`` wrapped in an adapter with ``trace()`` and ``warn()``."""
    logger = _logging.getLogger(name)
    if not logger.handlers:
        logger.addHandler(_logging.NullHandler())
    return _TraceLoggerAdapter(logger, extra=extra)


__all__ = [
    "BLATHER", "CRITICAL", "DEBUG", "ERROR", "FATAL", "INFO", "NOTSET", "TRACE", "WARN", "WARNING", "getLogger",
]
